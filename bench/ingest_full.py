"""Ingest throughput against the bare model, in one run.

1. Bare model: images/s of Embedder.embed on already-decoded batches of real
   catalog images (same backbone, input size and batch size as the ingest).
2. Ingest: the backbone stage as `searchctl ingest` runs it (the decode threads also keep
   each photo at the later stages' sizes: embedder.decoded), into a fresh data dir.
Prints wall time, images/s, the ratio to the bare model, and peak RSS.

    python bench/ingest_full.py                 # the whole shared catalog (44,072 images)
    python bench/ingest_full.py --limit 5000    # a part
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATASET, MOBILENET_WEIGHTS, peak_rss_mb

from embedder.decoded import DecodedPhotos, decoded_dir
from embedder.model import Embedder
from embedder.spec import DEFAULT_INPUT_SIZE, make_spec, parse_input_size
from ingest.catalog import read_catalog
from ingest.pipeline import _decode, ingest_catalog
from ingest.plan import StagePlan
from qdrant.edge import EdgeStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--input-size", default="x".join(map(str, DEFAULT_INPUT_SIZE)))
    ap.add_argument("--bare-batches", type=int, default=40)
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")
    args = ap.parse_args()

    spec = make_spec("mobilenet_v2", MOBILENET_WEIGHTS, parse_input_size(args.input_size))
    t0 = time.perf_counter()
    catalog = read_catalog(DATASET)
    print(f"catalog read: {time.perf_counter() - t0:.2f} s, {len(catalog.with_image)} images")
    embedder = Embedder(spec)

    products = catalog.with_image
    n = args.batch_size * args.bare_batches
    t0 = time.perf_counter()
    batches = [
        _decode(products[i : i + args.batch_size], spec, True, catalog.root, None).images
        for i in range(0, n, args.batch_size)
    ]
    decode_s = time.perf_counter() - t0
    print(f"decode and cut-out alone (1 thread): {n / decode_s:.0f} images/s")
    embedder.embed(batches[0])  # trace and warm up
    t0 = time.perf_counter()
    for x in batches:
        embedder.embed(x)
    bare = n / (time.perf_counter() - t0)
    print(f"bare model: {bare:.0f} images/s ({spec.describe()}, batch {args.batch_size})")

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="searchctl-bench-"))
    store = EdgeStore(data_dir)
    photos = DecodedPhotos(decoded_dir(data_dir), StagePlan().photo_sizes(), cutout=True)
    try:
        report = ingest_catalog(
            catalog,
            store,
            "bench",
            spec,
            make_embedder=lambda _: embedder,
            batch_size=args.batch_size,
            limit=args.limit,
            photos=photos,
        )
    finally:
        photos.close()
        store.close()
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    s = report.seconds
    rate = report.images_per_second
    print(
        f"ingest: {report.stored} stored, {len(report.bad_images)} bad, "
        f"{report.points_in_collection} points; wall {s['wall']:.1f} s "
        f"(pipeline {s['pipeline']:.1f} s, model {s['embed']:.1f} s, "
        f"upserts {s['upsert']:.1f} s, index build {s.get('optimize', 0):.1f} s)"
    )
    print(f"ingest pipeline: {rate:.0f} images/s = {rate / bare:.2f}x the bare model")
    overall = report.stored / s["wall"]
    print(f"ingest incl. index build: {overall:.0f} images/s; peak RSS {peak_rss_mb():.0f} MiB")
    assert np.isfinite(rate)


if __name__ == "__main__":
    main()
