"""Query latency and self-retrieval on an ingested shared catalog.

- `searchctl query` as a whole process (TensorFlow import and model build included);
- the library call when warm (Searcher.search_image: decode, embed, search), p50/p95, for
  every search mode the collection has: plain cosine on each photo vector (backbone, tuned,
  autoencoder), its blend (re-rank by colour, and by predicted type where the default does:
  the classifier runs on the photo too), --same-type;
- for every query: is the product itself rank 1 with score >= 0.99?
- recall@5 of the HNSW index against exact search on the same query vectors;
- with --photos DIR, the default search on a query catalog's photos (phone-like shots are
  cut out first, which catalog photos are not).

    python bench/ingest_full.py --data-dir /tmp/bench   # once, leaves collection "bench"
    python bench/query_latency.py --data-dir /tmp/bench --collection bench
    python bench/query_latency.py --data-dir /tmp/bench --photos /tmp/query_sets/phone
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATASET

from classifier.tuned import tuned_current
from ingest.catalog import read_catalog
from qdrant.edge import EdgeStore
from searchctl.query import Searcher, default_blend, default_vector


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--collection", default="bench")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--photos",
        type=Path,
        help="also time the default search on the photos of this query catalog (DIR/images), "
        "e.g. the phone-like set of make_query_sets.py: large photos that get cut out",
    )
    args = ap.parse_args()

    products = read_catalog(DATASET).with_image
    rng = np.random.default_rng(args.seed)
    sample = [products[i] for i in rng.choice(len(products), args.queries, replace=False)]

    cli = Path(sys.executable).with_name("searchctl")
    times = []
    for product in sample[: args.processes]:
        cmd = [str(cli), "query", str(product.image), "--top", "5", "--json",
               "--data-dir", str(args.data_dir), "--collection", args.collection]  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        assert json.loads(done.stdout)["hits"][0]["id"] == product.id
    print(f"searchctl query, whole process: median {np.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)")  # fmt: skip

    with EdgeStore(args.data_dir) as store:
        searcher = Searcher(store, args.collection, data_dir=args.data_dir)
        tagged = Searcher(store, args.collection, data_dir=args.data_dir, with_tags=True)
        vectors_here = store.vector_sizes(args.collection)
        default = default_vector(store, args.collection)
        modes = {}
        for vector in (searcher.spec.vector_name, "tuned", "autoencoder"):
            if vector not in vectors_here or (
                vector == "tuned" and not tuned_current(store, args.collection)
            ):
                continue
            modes[vector] = (searcher, {"vector": vector})
            blend = default_blend(store, args.collection, vector)
            if blend is not None:
                name = f"{vector}+blend" + (" (the default)" if vector == default else "")
                modes[name] = (tagged if blend.tag_weight else searcher,
                               {"vector": vector, "blend": blend})  # fmt: skip
            if blend is not None and blend.tag_weight:
                modes[f"{vector}+same-type"] = (tagged, {"vector": vector, "same_type": True})
        for name, (s, kwargs) in modes.items():
            s.search_image(sample[0].image, **kwargs)  # warm up
            ms = []
            for product in sample:
                t0 = time.perf_counter()
                s.search_image(product.image, top=5, **kwargs)
                ms.append((time.perf_counter() - t0) * 1000)
            p50, p95 = np.percentile(ms, [50, 95])
            print(f"library call, warm, {name} ({len(sample)} queries): "
                  f"p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)  # fmt: skip

        if args.photos:
            photos = sorted((args.photos / "images").glob("*.jpg"))[: args.queries]
            s, kwargs = next(m for n, m in modes.items() if n.endswith("(the default)"))
            s.search_image(photos[0], **kwargs)  # warm up
            ms = []
            for photo in photos:
                t0 = time.perf_counter()
                s.search_image(photo, top=5, **kwargs)
                ms.append((time.perf_counter() - t0) * 1000)
            p50, p95 = np.percentile(ms, [50, 95])
            print(f"library call, warm, the default on {len(photos)} photos of {args.photos}: "
                  f"p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)  # fmt: skip

        latencies, self_first, self_tied, vectors = [], 0, 0, []
        using = searcher.spec.vector_name
        for product in sample:
            t0 = time.perf_counter()
            result = searcher.search_image(product.image, top=5, vector=using)
            latencies.append((time.perf_counter() - t0) * 1000)
            top = result.hits[0]
            self_first += top.id == product.id and top.score >= 0.99
            # Some catalog photos are byte-identical under two ids: the twin ties at 1.0.
            self_tied += any(
                h.id == product.id and h.score >= top.score - 1e-6 >= 0.99 for h in result.hits
            )
            vectors.append(searcher.embed_image(product.image))
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"library call, warm ({len(sample)} queries): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        print(
            f"product itself at rank 1 with score >= 0.99: {self_first}/{len(sample)}; "
            f"tied for rank 1 (a duplicate photo under another id): {self_tied - self_first}"
        )
        approx = store.search_batch(args.collection, np.stack(vectors), using, 5)
        exact = store.search_batch(args.collection, np.stack(vectors), using, 5, exact=True)
        recall = np.mean(
            [len({h.id for h in a} & {h.id for h in e}) / 5 for a, e in zip(approx, exact)]
        )
        print(f"HNSW recall@5 against exact search: {recall:.4f}")


if __name__ == "__main__":
    main()
