"""Check `searchctl eval` against an independent computation: numpy brute force.

Reads every stored vector and payload of a collection, finds each point's top-k neighbours by
exact cosine in numpy (itself excluded), scores label matches with vectorised numpy, and prints
both tables and the largest difference. Run it on an ingested collection:

    python bench/eval_check.py --data-dir /tmp/bench_full --collection bench
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from qdrant.edge import EdgeStore
from searchctl.evaluate import EVAL_FIELDS, available_modes, evaluate, stored_queries

BLOCK = 2048


def brute_force_top_k(vectors: np.ndarray, k: int) -> np.ndarray:
    """[n x k] indices of each row's k nearest other rows by cosine, best first."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    out = np.empty((len(unit), k), dtype=np.int64)
    for start in range(0, len(unit), BLOCK):
        scores = unit[start : start + BLOCK] @ unit.T
        rows = np.arange(scores.shape[0])
        scores[rows, start + rows] = -np.inf  # leave the query itself out
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start : start + BLOCK] = np.take_along_axis(part, order, axis=1)
    return out


def label_rates(payloads: list[dict], neighbours: np.ndarray) -> dict[str, float]:
    rates = {}
    for field in EVAL_FIELDS:
        values = [p.get(field) for p in payloads]
        codes = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}))}
        labels = np.array([codes.get(v, -1) for v in values])
        has = labels >= 0
        match = (labels[neighbours] == labels[:, None]).mean(axis=1)
        rates[field] = float(match[has].mean())
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--collection", default="bench")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--vector", action="append", help="only these named vectors")
    ap.add_argument("--skip-exact", action="store_true", help="skip `eval --exact` (slow)")
    args = ap.parse_args()

    store = EdgeStore(args.data_dir)
    modes = [m for m in available_modes(store, args.collection) if m.same_field is None]
    vectors = sorted({m.vector for m in modes} & set(args.vector or {m.vector for m in modes}))
    ids = sorted(store.ids(args.collection))
    queries = stored_queries(store, args.collection, ids, vectors)
    print(f"{len(ids):,} points; vectors: {', '.join(vectors)}")
    for vector in vectors:
        t0 = time.perf_counter()
        neighbours = brute_force_top_k(queries.vectors[vector].astype(np.float32), args.k)
        numpy_rates = label_rates(queries.labels, neighbours)
        t_numpy = time.perf_counter() - t0
        tables = {"numpy brute force": numpy_rates}
        for exact in (False,) if args.skip_exact else (True, False):
            t0 = time.perf_counter()
            mode = [m for m in modes if m.name == vector]
            report = evaluate(store, args.collection, queries, mode, k=args.k, exact=exact)
            name = "searchctl eval --exact" if exact else "searchctl eval (HNSW)"
            tables[name] = report.results[0].agreement
            print(f"{vector}: {name} {time.perf_counter() - t0:.1f} s", flush=True)
        print(f"{vector}: numpy brute force {t_numpy:.1f} s")
        print(f"{'':24}" + "".join(f"{f[:12]:>13}" for f in EVAL_FIELDS))
        for name, rates in tables.items():
            print(f"{name:24}" + "".join(f"{rates[f]:13.4f}" for f in EVAL_FIELDS))
        for name, rates in tables.items():
            if name != "numpy brute force":
                diff = max(abs(rates[f] - numpy_rates[f]) for f in EVAL_FIELDS)
                verdict = "agree to 3 decimals" if diff < 5e-4 else "DISAGREE"
                print(f"max |{name} - numpy| = {diff:.5f}: {verdict}")


if __name__ == "__main__":
    main()
