"""The stages that must scale with the catalog, alone: backbone, colour and the classifier.

The main job on a catalog 4x the shared one (bench/make_big_catalog.py) would spend most of
its time training the autoencoder and the label taggers; this runs the library's ingest with
the backbone and colour stages, then the classifier stage alone (`run_stages(only=...)`),
MobileNetV2 with the shared weights, and prints each stage's time. Run it under
bench/peak_memory.py for its memory:

    python bench/peak_memory.py -- python bench/ingest_scale.py --catalog BIG --data-dir DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import MOBILENET_WEIGHTS

from embedder.spec import DEFAULT_INPUT_SIZE, make_spec
from ingest.catalog import read_catalog
from ingest.plan import StageContext, StagePlan, ingest, run_stages
from qdrant.edge import EdgeStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--collection", default="scale")
    args = ap.parse_args()
    spec = make_spec("mobilenet_v2", MOBILENET_WEIGHTS, DEFAULT_INPUT_SIZE)
    t0 = time.perf_counter()
    catalog = read_catalog(args.catalog)
    read_seconds = time.perf_counter() - t0
    print(f"catalog: {len(catalog.with_image):,} products with a photo ({read_seconds:.0f} s)")
    with EdgeStore(args.data_dir) as store:
        per_photo = StagePlan(autoencoder=False, classifier=False)
        result = ingest(catalog, store, args.collection, spec, args.data_dir, per_photo)
        print(
            f"backbone: {result.backbone.stored:,} stored, {result.backbone.seconds['wall']:.0f} s"
        )
        print(f"colour: {result.stages['colour'].details.get('seconds')} s")
        context = StageContext(store, args.collection, spec, args.data_dir, StagePlan())
        started = time.perf_counter()
        report = run_stages(context, only="classifier")["classifier"]
        print(f"classifier: {report.action}, {time.perf_counter() - started:.0f} s")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
