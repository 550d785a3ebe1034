"""What scalar (int8) and binary quantization of a collection's vectors would save, and cost
in recall, on the real collection: every point's vector copied into throwaway Qdrant Edge
shards (plain, int8, binary; HNSW m=16, ef_construct=100 as ingest builds it), each searched
with --queries stored vectors (hnsw_ef 128, as the search does); recall@5 against an exact
search of the plain vectors, with and without re-scoring the top 10 or 20 quantized
candidates on the original vectors; p50 latency; vector bytes kept in RAM per point.

    python bench/quantization.py --data-dir STORE --collection bench
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from qdrant.base import unit_rows
from qdrant.edge import HNSW_EF, EdgeStore

K = 5


def build(path: Path, vector: str, dim: int, rows: np.ndarray, ids: list[int], quantization):
    params = qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine,
                                 quantization_config=quantization)  # fmt: skip
    config = qe.EdgeConfig(
        vectors={vector: params},
        hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000),
    )
    shard = qe.EdgeShard.create(str(path), config)
    for start in range(0, len(ids), 1000):
        page = zip(ids[start : start + 1000], rows[start : start + 1000])
        points = [qe.Point(i, {vector: row.tolist()}, {}) for i, row in page]
        shard.update(qe.UpdateOperation.upsert_points(points))
    started = time.perf_counter()
    shard.optimize()
    shard.flush()
    return shard, time.perf_counter() - started


def top_ids(shard, vector: str, query: np.ndarray, params) -> tuple[list[int], float]:
    request = qe.QueryRequest(limit=K, query=qe.Query.Nearest(query.tolist(), using=vector),
                              with_payload=False, params=params)  # fmt: skip
    started = time.perf_counter()
    hits = shard.query(request)
    return [int(h.id) for h in hits], (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", default="bench")
    parser.add_argument("--vector", default=None, help="[default: the backbone's]")
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()

    from searchctl.query import default_vector

    with EdgeStore(args.data_dir) as store:
        vector = args.vector or default_vector(store, args.collection)
        dim = store.vector_sizes(args.collection)[vector]
        started = time.perf_counter()
        points = list(store.iter_points(args.collection, with_vectors=[vector]))
    ids = [p.id for p in points if vector in (p.vectors or {})]
    rows = unit_rows(np.stack([p.vectors[vector] for p in points if vector in (p.vectors or {})]))
    del points
    print(f"{args.collection}/{vector}: {len(ids):,} points x {dim} dims, read in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    rng = np.random.default_rng(0)
    sample = rng.choice(len(ids), min(args.queries, len(ids)), replace=False)

    kinds = {
        "float32 (today)": (None, 4 * dim),
        "scalar int8": (qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99,
                                                    always_ram=True), dim),
        "binary": (qe.BinaryQuantizationConfig(always_ram=True), dim / 8),
    }  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="searchctl-quantization-"))
    try:
        plain, _ = build(root / "truth", vector, dim, rows, ids, None)
        exact = qe.SearchParams(exact=True)
        truth = [top_ids(plain, vector, rows[i], exact)[0] for i in sample]
        print("| vectors | RAM per point for the vector | index build s | re-scored on originals | "
              "recall@5 vs exact | p50 ms |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- |")
        for name, (quantization, ram_bytes) in kinds.items():
            shard, seconds = build(root / name.split()[0], vector, dim, rows, ids, quantization)
            # Re-scoring re-ranks only `limit` x oversampling candidates on the original
            # vectors (Qdrant Edge's rescore alone, without oversampling, changed nothing).
            for oversampling in [None] if quantization is None else [0, 2, 4]:
                q = None
                if oversampling is not None:
                    rescore, times_k = bool(oversampling), float(oversampling or 1)
                    q = qe.QuantizationSearchParams(rescore=rescore, oversampling=times_k)
                params = qe.SearchParams(hnsw_ef=HNSW_EF, quantization=q)
                found, times = [], []
                for i in sample:
                    got, ms = top_ids(shard, vector, rows[i], params)
                    found.append(got)
                    times.append(ms)
                recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)])
                rescored = {None: "-", 0: "no"}.get(oversampling) or f"top {K * oversampling}"
                print(f"| {name} | {ram_bytes:,.0f} B | {seconds:.0f} | {rescored} | "
                      f"{recall:.3f} | {statistics.median(times):.2f} |", flush=True)  # fmt: skip
            shard.close()
        plain.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
