"""Choose the default input size: quality and speed of mobilenet_v2 at several sizes.

For a seeded sample of the shared catalog, embeds every image at each size and reports:
images/s of the bare model (batch 64), leave-one-out top-5 label match rates computed by numpy
brute force within the sample, and how often a 225x300 upscale of a catalog photo (a studio
shot at another resolution) finds its own product in the top 5.

    python bench/input_size.py --sample 4000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import DATASET, MOBILENET_WEIGHTS
from PIL import Image

from embedder.images import letterbox, open_image
from embedder.model import Embedder
from embedder.spec import make_spec, parse_input_size
from ingest.catalog import read_catalog

FIELDS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="80x60,96x96,128x96,160x120,224x168,224x224")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    products = read_catalog(DATASET).with_image
    rng = np.random.default_rng(args.seed)
    sample = [products[i] for i in rng.choice(len(products), args.sample, replace=False)]
    originals = [open_image(p.image) for p in sample]
    upscaled = [im.resize((225, 300), Image.Resampling.BICUBIC) for im in originals]
    labels = {f: np.array([str(p.payload.get(f)) for p in sample]) for f in FIELDS}

    print(f"sample {len(sample)} images, seed {args.seed}, batch {args.batch}")
    header = f"{'size':>8} {'img/s':>7} " + " ".join(f"{f[:11]:>11}" for f in FIELDS)
    print(header + "  self@5(225x300)")
    for text in args.sizes.split(","):
        h, w = parse_input_size(text)
        emb = Embedder(make_spec("mobilenet_v2", MOBILENET_WEIGHTS, (h, w)))
        x = np.stack([letterbox(im, h, w) for im in originals])
        q = np.stack([letterbox(im, h, w) for im in upscaled])
        emb.embed(x[: args.batch])  # warm up
        t0 = time.perf_counter()
        vecs = np.concatenate(
            [emb.embed(x[i : i + args.batch]) for i in range(0, len(x), args.batch)]
        )
        rate = len(x) / (time.perf_counter() - t0)
        qv = np.concatenate(
            [emb.embed(q[i : i + args.batch]) for i in range(0, len(q), args.batch)]
        )
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)
        sims = vecs @ vecs.T
        np.fill_diagonal(sims, -np.inf)
        top = np.argsort(-sims, axis=1)[:, :5]
        rates = [float((labels[f][top] == labels[f][:, None]).mean()) for f in FIELDS]
        self_top = np.argsort(-(qv @ vecs.T), axis=1)[:, :5]
        self_rate = float((self_top == np.arange(len(q))[:, None]).any(axis=1).mean())
        print(
            f"{text:>8} {rate:7.0f} " + " ".join(f"{r:11.3f}" for r in rates) + f"  {self_rate:.3f}"
        )


if __name__ == "__main__":
    main()
