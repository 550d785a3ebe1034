"""`migrate` of an N-product embedded collection to qdrant-client's in-memory mode (what a
Qdrant server gets over the same client API; no server can run here), then a re-run.

    python bench/migrate_collection.py --data-dir STORE --collection bench -n 5000

The N-product collection is made from the first N points of STORE's collection (every named
vector, payload, metadata and payload index), in a temporary directory. Prints the copy's
wall time, what the verification compared, a re-run (nothing to copy), and the same search
answered by both stores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from qdrant.base import PointData
from qdrant.edge import EdgeStore
from qdrant.migrate import migrate
from qdrant.server import ServerStore


def small_collection(source: EdgeStore, name: str, target: EdgeStore, n: int) -> None:
    ids = sorted(source.ids(name))[:n]
    target.create_collection(
        name, source.vector_sizes(name), source.get_metadata(name), source.payload_indexes(name)
    )
    for start in range(0, len(ids), 1000):
        points = source.retrieve(name, ids[start : start + 1000], with_vectors=True)
        target.upsert(name, [PointData(p.id, p.vectors, p.payload) for p in points])
    target.optimize(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--collection", default="bench")
    ap.add_argument("-n", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with EdgeStore(args.data_dir) as big, EdgeStore(tmp) as small:
            small_collection(big, args.collection, small, args.n)
        with EdgeStore(tmp) as edge:
            server = ServerStore(QdrantClient(":memory:"), "QdrantClient(':memory:')")
            t0 = time.perf_counter()
            report = migrate(edge, server, args.collection)
            wall = time.perf_counter() - t0
            vectors = ", ".join(f"{k} {v}" for k, v in edge.vector_sizes(args.collection).items())
            print(f"collection: {report.source_points} points; vectors {vectors}")
            print(
                f"migrate: {wall:.1f} s wall; copied {report.copied}; verified {report.verified} "
                f"(ids, metadata, {report.sampled} points vector by vector); problems "
                f"{report.problems or 'none'}; payload indexes {len(report.indexes)} created "
                "(the in-memory mode keeps none, so they are not checked here)"
            )
            t0 = time.perf_counter()
            again = migrate(edge, server, args.collection)
            print(
                f"re-run: {time.perf_counter() - t0:.1f} s; copied {again.copied}, "
                f"{again.already_there} already there; verified {again.verified}"
            )
            vector = next(iter(edge.vector_sizes(args.collection)))
            first = min(edge.ids(args.collection))
            (probe,) = edge.retrieve(args.collection, [first], with_vectors=True)
            row = np.asarray(probe.vectors[vector])
            ours = [h.id for h in edge.search(args.collection, row, vector, 10, exact=True)]
            theirs = [h.id for h in server.search(args.collection, row, vector, 10, exact=True)]
            print(f"top 10 by {vector} for product {probe.id}: same ids {ours == theirs}")


if __name__ == "__main__":
    main()
