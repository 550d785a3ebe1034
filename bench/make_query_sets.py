"""External query sets made from catalog photos, for `searchctl eval --queries DIR`.

Two catalogs in the shared layout (styles.csv with the same rows, images/<id>.jpg), from a
seeded sample of products:
- `studio/`: the same studio photo at another resolution (bicubic, default 225x300);
- `phone/`: a phone-like shot: the product cut out of its white background and laid,
  enlarged, off-centre and rotated, on a coloured or textured background, with a colour
  cast, blur and strong JPEG compression.

The photos are made from catalog images but are not points of any collection: eval reports
whether the same product id comes back (same_product_recall) besides label match rates. Keep
these sets out of any training.

    python bench/make_query_sets.py --out /tmp/query_sets --n 500
    searchctl eval --queries /tmp/query_sets/phone --data-dir DIR -c bench --json
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from _common import DATASET
from PIL import Image, ImageFilter

from embedder.images import fill_holes
from ingest.catalog import read_catalog


def studio(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img.resize(size, Image.BICUBIC)


def phone(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A 480x640 shot: background, product off-centre and rotated, colour cast, blur, JPEG."""
    width, height = 480, 640
    base = rng.integers(60, 230, size=3)
    background = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    if rng.random() < 0.5:  # textured: a fabric-like noise
        background = background + rng.normal(0, 18, size=(height, width, 1))
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    scale = rng.uniform(4.5, 7.0)  # the 60x80 photo becomes 270-420 px wide
    size = (int(60 * scale), int(80 * scale))
    # Cut the product out of its white studio background (what is not near-white, grown by a
    # pixel), so it lies on the new background like a product photographed there. Near-white
    # inside the product (a white shirt, a white sole) is product: the first sets made here
    # let the background show through it, a see-through white no camera takes.
    near_white = (255 - np.asarray(img, np.int16)).max(axis=-1) <= 18
    mask = Image.fromarray(np.where(fill_holes(~near_white), 255, 0).astype(np.uint8)).filter(
        ImageFilter.MaxFilter(3)
    )
    angle = rng.uniform(-15, 15)
    product = img.resize(size, Image.BICUBIC).rotate(angle, Image.BICUBIC, expand=True)
    mask = mask.resize(size, Image.BILINEAR).rotate(angle, Image.BILINEAR, expand=True)
    left = int(rng.uniform(0, max(1, width - product.width)))
    top = int(rng.uniform(0, max(1, height - product.height)))
    canvas.paste(product, (left, top), mask)
    arr = np.asarray(canvas).astype(np.float32)
    arr = arr * rng.uniform(0.85, 1.15, size=3)  # colour cast
    shot = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return shot.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--studio-size", default="225x300", help="WIDTHxHEIGHT")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.studio_size.split("x"))

    products = read_catalog(DATASET).with_image
    rng = np.random.default_rng(args.seed)
    picked = sorted(rng.choice(len(products), args.n, replace=False))
    chosen = {products[i].id for i in picked}
    with open(DATASET / "styles.csv", newline="") as f:
        header = f.readline()
    for name in ("studio", "phone"):
        (args.out / name / "images").mkdir(parents=True, exist_ok=True)
    for i in picked:
        product = products[i]
        img = Image.open(product.image).convert("RGB")
        studio(img, size).save(args.out / "studio" / "images" / f"{product.id}.jpg", quality=95)
        shot = phone(img, rng)
        quality = int(rng.integers(35, 70))
        shot.save(args.out / "phone" / "images" / f"{product.id}.jpg", quality=quality)
    # The label rows of the chosen products, written back as the catalog reads them.
    fields = header.strip().split(",")
    rows = [p.payload for p in products if p.id in chosen]
    for name in ("studio", "phone"):
        with open(args.out / name / "styles.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(fields)
            for row in rows:
                writer.writerow(["" if row.get(k) is None else row.get(k) for k in fields])
    print(f"{len(picked)} products -> {args.out}/studio ({size[0]}x{size[1]}), {args.out}/phone")


if __name__ == "__main__":
    main()
