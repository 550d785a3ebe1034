"""Which autoencoder makes the better search vector? Train each candidate on the whole shared
catalog, embed every image, and report leave-one-out top-5 label match rates (numpy exact
cosine, itself excluded) beside plain 16x16 raw pixels and (optionally) stored backbone vectors.

    python bench/autoencoder_compare.py --out /tmp/ae_compare [--arch paper --arch default]
    python bench/autoencoder_compare.py --out /tmp/ae_compare --backbone-store /tmp/bench_full
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import DATASET, PrintNotes, peak_rss_mb
from eval_check import brute_force_top_k, label_rates

from embedder.autoencoder import ARCHS, AutoencoderConfig, AutoencoderEmbedder, train
from embedder.images import load_images
from ingest.catalog import read_catalog

FIELDS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour")
CANDIDATES = {
    **ARCHS,
    # The paper's network at the photos' own aspect: isolates the squashing.
    "paper_aspect": replace(
        ARCHS["paper"], arch="paper_aspect", input_height=80, input_width=60, fit="letterbox"
    ),
    # Wider, batch norm, denoising, ReLU code in RGB.
    "wide_bn": AutoencoderConfig(
        "wide_bn", 80, 60, "letterbox", (32, 64, 16), batch_norm=True, loss="mse", noise=0.05
    ),
    # The default network with the paper's embedding (the bottleneck alone), and the paper's
    # network with the default's (first stage beside the bottleneck): isolates the embedding.
    "default_code": replace(ARCHS["default"], arch="default_code", embedding="code"),
    "paper_multiscale": replace(ARCHS["paper"], arch="paper_multiscale", embedding="multiscale"),
    # Light, signed (linear) code in RGB: the default without its colour space.
    "linear": AutoencoderConfig(
        "linear", 80, 60, "letterbox", (16, 16, 16), loss="mse", linear_code=True
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arch", action="append", help=f"candidates: {', '.join(CANDIDATES)}")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--limit", type=int, default=None, help="first N products only")
    ap.add_argument("--backbone-store", type=Path, help="data dir of an ingested 'bench'")
    args = ap.parse_args()

    products = read_catalog(DATASET).with_image[: args.limit]
    payloads = [p.payload for p in products]
    paths = [p.image for p in products]
    rows: dict[str, dict] = {}

    raw, good, _ = load_images(paths, 16, 16, fit="squash")
    keep = np.array(good)
    rows["raw pixels 16x16"] = label_rates(
        [payloads[i] for i in keep], brute_force_top_k(raw.reshape(len(raw), -1) / 255.0, 5)
    )
    print("raw pixels", rows["raw pixels 16x16"], flush=True)
    if args.backbone_store:
        from qdrant.edge import EdgeStore
        from searchctl.evaluate import stored_queries

        store = EdgeStore(args.backbone_store)
        ids = [products[i].id for i in keep]
        q = stored_queries(store, "bench", ids, ["mobilenet_v2"])
        rows["mobilenet_v2 (stored)"] = label_rates(
            q.labels, brute_force_top_k(q.vectors["mobilenet_v2"], 5)
        )
        store.close()

    for name in args.arch or list(CANDIDATES):
        config: AutoencoderConfig = CANDIDATES[name]
        t0 = time.perf_counter()
        images, good, _ = load_images(paths, config.input_height, config.input_width, config.fit)
        t_decode = time.perf_counter() - t0
        directory = args.out / name

        record = train(
            images,
            config,
            directory,
            trained_on={"catalog": str(DATASET)},
            epochs=args.epochs,
            progress=PrintNotes(f"  {name}: "),
        )
        t1 = time.perf_counter()
        encoder = AutoencoderEmbedder(directory)
        vectors = np.concatenate(
            [encoder.embed(images[s : s + 1024]) for s in range(0, len(images), 1024)]
        )
        t_embed = time.perf_counter() - t1
        rates = label_rates([payloads[i] for i in good], brute_force_top_k(vectors, 5))
        rows[f"autoencoder {name} ({config.dim} d)"] = rates
        info = {
            "decode_s": round(t_decode, 1),
            "train_s": record.seconds["train"],
            "epochs": record.epochs,
            "best_val_loss": round(record.best_val_loss, 5),
            "embed_s": round(t_embed, 1),
            "peak_rss_mb": round(peak_rss_mb()),
        }
        print(name, info, rates, flush=True)
        (args.out / f"{name}.json").write_text(json.dumps({"info": info, "rates": rates}))

    print(f"\n| vector | {' | '.join(FIELDS)} |\n|---|" + "---|" * len(FIELDS))
    for name, rates in rows.items():
        print(f"| {name} | " + " | ".join(f"{rates[f]:.3f}" for f in FIELDS) + " |")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
