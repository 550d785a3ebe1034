"""External query sets made from catalog photos, for `searchctl eval --queries DIR`.

Catalogs in the shared layout (styles.csv with the same rows, images/<id>.jpg), from a
seeded sample of products:
- `studio/`: the same studio photo at another resolution (bicubic, default 225x300). An
  upscale holds no detail the stored photo lacks;
- `phone/`: a phone-like shot: the product cut out of its white background and laid,
  enlarged, off-centre and rotated, on a coloured or textured background, with a colour
  cast, blur and strong JPEG compression;
- `phone2/`: a second phone-like generator that shares none of phone/'s choices: the product
  smaller in a larger frame, seen in perspective, under uneven light (a gradient, a
  vignette), on wood-like stripes or a two-tone floor, partly hidden (a finger or a tag),
  with a gamma shift, sensor noise and a portrait or landscape frame. Tune on one, report
  both;
- `sharper/`: photos sharper than the catalog they query. `sharper/catalog/` is a catalog of
  --catalog-n products whose photos are halved and blurred (ingest it as its own
  collection); `sharper/queries/` holds the shared originals of the first --n of them, twice
  the catalog's detail.

The photos are made from catalog images but are not points of any collection (sharper/'s
queries are not points of the halved catalog): eval reports whether the same product id comes
back (same_product_recall) besides label match rates. Keep these sets out of any training.

    python bench/make_query_sets.py --out QUERIES --n 500
    searchctl eval --queries QUERIES/phone --data-dir DIR -c bench --json
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from _common import DATASET
from PIL import Image, ImageDraw, ImageFilter

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


PHONE2_STREAM = 6  # phone2/'s random stream, beside the seed


def _floor(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A background other than phone()'s flat colours: wood-like stripes or a two-tone floor."""
    base = rng.integers(70, 210, size=3).astype(np.float32)
    if rng.random() < 0.5:
        y = np.arange(height, dtype=np.float32)[:, None, None]
        grain = np.sin(y / rng.uniform(6, 14) + rng.uniform(0, 6)) * rng.uniform(8, 20)
        return np.broadcast_to(base + grain, (height, width, 3)).copy()
    other = base * rng.uniform(0.7, 1.3, size=3)
    split = int(height * rng.uniform(0.3, 0.7))
    floor = np.empty((height, width, 3), np.float32)
    floor[:split], floor[split:] = base, other
    return floor


def _lighting(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uneven light: a linear gradient across the frame and a vignette."""
    height, width = arr.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height) * rng.uniform(0.2, 0.45)
    r = np.hypot(xx / width - 0.5, yy / height - 0.5)
    light = (1 - ramp + ramp.mean()) * (1 - rng.uniform(0.15, 0.35) * r**2 * 2)
    return arr * light[..., None]


def _perspective(product: Image.Image, mask: Image.Image, rng: np.random.Generator):
    """The product and its mask seen from above at a slant: corners pulled in by up to 12 %."""
    w, h = product.size
    pull = rng.uniform(0.02, 0.12, size=8) * np.array([w, h] * 4)
    quad = (
        pull[0], pull[1], pull[2], h - pull[3], w - pull[4], h - pull[5], w - pull[6], pull[7],
    )  # fmt: skip
    args = ((w, h), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC)
    return product.transform(*args, fillcolor=(255, 255, 255)), mask.transform(*args)


def phone2(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """phone()'s counterpart with other choices throughout (see the module docstring)."""
    width, height = (720, 960) if rng.random() < 0.6 else (960, 720)
    canvas = Image.fromarray(np.clip(_floor(width, height, rng), 0, 255).astype(np.uint8))
    near_white = (255 - np.asarray(img, np.int16)).max(axis=-1) <= 18
    mask = Image.fromarray(np.where(fill_holes(~near_white), 255, 0).astype(np.uint8))
    scale = rng.uniform(3.0, 5.5)  # the 60x80 photo becomes 180-330 px wide
    size = (int(60 * scale), int(80 * scale))
    product, mask = _perspective(
        img.resize(size, Image.LANCZOS), mask.resize(size, Image.BILINEAR), rng
    )
    left = int(rng.uniform(0.1, 0.9) * max(1, width - product.width))
    top = int(rng.uniform(0.1, 0.9) * max(1, height - product.height))
    canvas.paste(product, (left, top), mask)
    if rng.random() < 0.5:  # partly hidden: a finger-coloured ellipse or a paper tag
        hide = Image.new("L", canvas.size, 0)
        draw = ImageDraw.Draw(hide)
        cx = left + rng.uniform(0, product.width)
        cy = top + rng.uniform(0.6, 1.0) * product.height
        rx, ry = product.width * rng.uniform(0.08, 0.15), product.height * rng.uniform(0.05, 0.1)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        colour = (224, 172, 140) if rng.random() < 0.6 else (245, 240, 225)
        canvas.paste(Image.new("RGB", canvas.size, colour), (0, 0), hide)
    arr = _lighting(np.asarray(canvas).astype(np.float32), rng)
    arr = 255 * (np.clip(arr, 0, 255) / 255) ** rng.uniform(0.8, 1.25)  # exposure
    arr = arr + rng.normal(0, rng.uniform(2, 7), arr.shape)  # sensor noise
    shot = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return shot.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))


def halved(img: Image.Image) -> Image.Image:
    """A catalog photo with half the detail: halved (box filter) and blurred a little."""
    small = img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.BOX)
    return small.filter(ImageFilter.GaussianBlur(0.5))


def write_styles(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Label rows written back as the catalog reads them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for row in rows:
            writer.writerow(["" if row.get(k) is None else row.get(k) for k in fields])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=500, help="query photos a set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--studio-size", default="225x300", help="WIDTHxHEIGHT")
    ap.add_argument(
        "--sets", nargs="+", default=["studio", "phone", "phone2", "sharper"],
        choices=["studio", "phone", "phone2", "sharper"],
    )  # fmt: skip
    ap.add_argument("--catalog-n", type=int, default=6000, help="products of sharper/catalog")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.studio_size.split("x"))

    products = read_catalog(DATASET).with_image
    rng = np.random.default_rng(args.seed)
    picked = sorted(rng.choice(len(products), args.n, replace=False))
    with open(DATASET / "styles.csv", newline="") as f:
        fields = f.readline().strip().split(",")
    # Each set draws from its own generator, so that adding a set changes no other set.
    makers = {
        "studio": lambda img, r: studio(img, size),
        "phone": phone,
        "phone2": phone2,
    }
    for name, make in makers.items():
        if name not in args.sets:
            continue
        # phone/ continues the sample's stream (its photos as before phone2/ existed);
        # phone2/ has a stream of its own (studio/ draws nothing).
        set_rng = rng if name == "phone" else np.random.default_rng([args.seed, PHONE2_STREAM])
        for i in picked:
            product = products[i]
            img = Image.open(product.image).convert("RGB")
            shot = make(img, set_rng)
            quality = 95 if name == "studio" else int(set_rng.integers(35, 70))
            (args.out / name / "images").mkdir(parents=True, exist_ok=True)
            shot.save(args.out / name / "images" / f"{product.id}.jpg", quality=quality)
        write_styles(args.out / name / "styles.csv", fields, [products[i].payload for i in picked])
        print(f"{name}: {len(picked)} photos -> {args.out / name}")
    if "sharper" in args.sets:
        catalog_rng = np.random.default_rng([args.seed, 99])
        in_catalog = sorted(catalog_rng.choice(len(products), args.catalog_n, replace=False))
        queries = in_catalog[: args.n]
        out = args.out / "sharper"
        for sub, chosen in (("catalog", in_catalog), ("queries", queries)):
            (out / sub / "images").mkdir(parents=True, exist_ok=True)
            for i in chosen:
                product = products[i]
                target = out / sub / "images" / f"{product.id}.jpg"
                if sub == "queries":
                    target.write_bytes(product.image.read_bytes())  # the shared original
                else:
                    halved(Image.open(product.image).convert("RGB")).save(target, quality=92)
            write_styles(out / sub / "styles.csv", fields, [products[i].payload for i in chosen])
        print(f"sharper: {len(in_catalog)} halved photos -> {out / 'catalog'}, "
              f"{len(queries)} originals -> {out / 'queries'}")  # fmt: skip


if __name__ == "__main__":
    main()
