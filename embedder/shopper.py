"""Shoppers' photos made from catalog photos, and what the search learns from them.

A shopper photographs a product on a table or a bed, tilted, under their room's light; the
catalog holds it upright on studio white. `shopper_photo` makes such a photo of a catalog
product; ingest (ingest.shopper) embeds a sample of them the way a query photo is embedded
(cut out, brought to the catalog's detail, pooled with its views), and from those rows:
- `QueryMap`, a linear map fitted from a shopper photo's backbone vector to its product's
  stored one, added to a cut-out query's vector before the search;
- the type tagger learns to name a shopper photo's articleType (classifier.label_tags).

Its choices are its own, not those of the query sets that judge it
(bench/make_query_sets.py's `phone/` and `phone2/`): flat, two-colour gradient or blotchy
backgrounds, a white balance and exposure of their own, turns of up to 20 degrees, blur and
JPEG. See docs/quality.md, "Shoppers' photos, third round".
"""

from __future__ import annotations

import io
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from embedder.files import models_dir, save_file_fresh, write_json_atomic
from embedder.images import fill_holes
from qdrant.base import unit_rows

FRAMES = ((240, 320), (320, 240), (280, 280))  # (width, height) of the shot
STUDIO_WHITE = 18  # a catalog pixel this close to white in every channel is the studio's
# The map's ridge penalty: on a tuning set of phone-like photos (10,000 shopper photos,
# backbone vectors of unit length) 0.03-0.3 found the very product alike, 1 and more less
# often (docs/quality.md, "Shoppers' photos, third round").
RIDGE = 0.1


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A flat colour, a gradient between two colours, or soft blotches (float32 H x W x 3)."""
    base = rng.integers(30, 235, size=3).astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(base, (height, width, 3)).copy()
    if kind == 1:
        other = np.clip(base * rng.uniform(0.6, 1.4, size=3), 0, 255)
        vertical = rng.random() < 0.5
        ramp = np.linspace(0, 1, height if vertical else width, dtype=np.float32)
        ramp = ramp[:, None, None] if vertical else ramp[None, :, None]
        return np.broadcast_to(base + (other - base) * ramp, (height, width, 3)).copy()
    coarse = rng.normal(128, rng.uniform(8, 30), size=(6, 8, 3))
    coarse_img = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8))
    blotches = np.asarray(coarse_img.resize((width, height), Image.BICUBIC), np.float32)
    return base + blotches - 128


def shopper_photo(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A catalog photo (a product on studio white) as a shopper might take it: laid on a
    background, 35-85 % of the frame high, turned, under another white balance, contrast and
    exposure, blurred and JPEG-compressed."""
    width, height = FRAMES[rng.integers(len(FRAMES))]
    canvas = Image.fromarray(np.clip(_background(width, height, rng), 0, 255).astype(np.uint8))
    photo = photo.convert("RGB")
    studio = (255 - np.asarray(photo, np.int16)).max(axis=-1) <= STUDIO_WHITE
    mask = Image.fromarray(np.where(fill_holes(~studio), 255, 0).astype(np.uint8))
    scale = rng.uniform(0.35, 0.85) * height / photo.height
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    angle = rng.uniform(-20, 20)
    product = photo.resize(size, Image.BICUBIC).rotate(angle, Image.BICUBIC, expand=True)
    mask = mask.resize(size, Image.BILINEAR).rotate(angle, Image.BILINEAR, expand=True)
    if product.width > width or product.height > height:
        fit = 0.95 * min(width / product.width, height / product.height)
        size = (max(1, int(product.width * fit)), max(1, int(product.height * fit)))
        product, mask = product.resize(size, Image.BICUBIC), mask.resize(size, Image.BILINEAR)
    left = int(rng.uniform(0, max(1, width - product.width)))
    top = int(rng.uniform(0, max(1, height - product.height)))
    canvas.paste(product, (left, top), mask)
    arr = np.asarray(canvas, np.float32) * rng.uniform(0.82, 1.18, size=3)  # white balance
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.75, 1.2)
    shot = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    shot = shot.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
    buffer = io.BytesIO()
    shot.save(buffer, "JPEG", quality=int(rng.integers(40, 90)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@dataclass
class QueryMap:
    """A ridge regression from a cut-out photo's backbone vector (unit length) to its
    product's stored vector (unit length): `apply` adds its direction to the query's, which
    brings a shopper's photo nearer its product (docs/quality.md, "Shoppers' photos, third
    round")."""

    mean_in: np.ndarray  # (dim,)
    weights: np.ndarray  # (dim, dim)
    mean_out: np.ndarray  # (dim,)

    @classmethod
    def fit(cls, photos: np.ndarray, products: np.ndarray, ridge: float = RIDGE) -> QueryMap:
        """From rows of shopper photos' vectors and their products' stored vectors."""
        x, y = unit_rows(photos).astype(np.float64), unit_rows(products).astype(np.float64)
        mean_in, mean_out = x.mean(axis=0), y.mean(axis=0)
        xc = x - mean_in
        gram = xc.T @ xc + ridge * np.eye(x.shape[1])
        weights = np.linalg.solve(gram, xc.T @ (y - mean_out))
        as_float32 = (a.astype(np.float32) for a in (mean_in, weights, mean_out))
        return cls(*as_float32)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Query vectors (rows, or one) -> the unit mean direction of each and its mapped
        vector."""
        rows = unit_rows(np.atleast_2d(np.asarray(vectors, np.float32)))
        mapped = unit_rows((rows - self.mean_in) @ self.weights + self.mean_out)
        out = unit_rows(rows + mapped)
        return out if np.ndim(vectors) > 1 else out[0]

    def save(self, path: Path) -> None:
        np.savez(path, mean_in=self.mean_in, weights=self.weights, mean_out=self.mean_out)

    @classmethod
    def load(cls, path: Path) -> QueryMap:
        with np.load(path) as arrays:
            return cls(arrays["mean_in"], arrays["weights"], arrays["mean_out"])


SHOPPER_DIR = "shopper_photos"  # under the collection's models directory
# The set's and the map's files (<prefix>-<stamp>.npz, save_file_fresh) and the record naming them
SET_PREFIX, MAP_PREFIX, RECORD_FILE = "shopper_photos", "query_map", "shopper_photos.json"


@dataclass
class ShopperSet:
    """Catalog products' shopper photos as a query photo is embedded: `ids` (the product of
    each row) and named vectors (the backbone's, pooled with its views where it was cut out,
    and the colour vector), with `record` (its `mark`, which a tagger trained on it keeps)."""

    ids: np.ndarray
    vectors: dict[str, np.ndarray]
    cut_out: np.ndarray
    record: dict

    @property
    def mark(self) -> str | None:
        return self.record.get("mark")


def shopper_dir(data_dir: Path, collection: str) -> Path:
    return models_dir(data_dir, collection) / SHOPPER_DIR


def read_shopper_record(data_dir: Path, collection: str) -> dict | None:
    path = shopper_dir(data_dir, collection) / RECORD_FILE
    return json.loads(path.read_text()) if path.exists() else None


def load_shopper_set(data_dir: Path, collection: str) -> ShopperSet | None:
    """The collection's shopper photos' vectors, or None when it has none."""
    record = read_shopper_record(data_dir, collection)
    if record is None:
        return None
    with np.load(shopper_dir(data_dir, collection) / record["set_file"]) as arrays:
        vectors = {name: arrays[f"vector_{name}"] for name in record["vectors"]}
        return ShopperSet(arrays["ids"], vectors, arrays["cut_out"], record)


def save_shopper_set(
    data_dir: Path,
    collection: str,
    shoppers: ShopperSet,
    query_map: QueryMap | None,
) -> ShopperSet:
    """Write the set's arrays and the map under fresh names, then the record naming them (a
    kill at any point leaves the previous record with its own files), then drop older
    files. Returns the set with its record as written (a fresh `mark`)."""
    directory = shopper_dir(data_dir, collection)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"vector_{k}": np.asarray(v, np.float32) for k, v in shoppers.vectors.items()}
    ids, cut_out = np.asarray(shoppers.ids, np.int64), np.asarray(shoppers.cut_out, bool)
    set_file = save_file_fresh(
        lambda path: np.savez(path, ids=ids, cut_out=cut_out, **arrays),
        directory, SET_PREFIX, ".npz",
    )  # fmt: skip
    map_file = None
    if query_map is not None:
        map_file = save_file_fresh(query_map.save, directory, MAP_PREFIX, ".npz")
    record = {
        **shoppers.record,
        "mark": secrets.token_hex(6),
        "rows": len(ids),
        "cut_out": int(cut_out.sum()),
        "vectors": list(shoppers.vectors),
        "set_file": set_file,
        "map_file": map_file,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(directory / RECORD_FILE, record)
    for old in directory.glob("*.npz"):
        if old.name not in (set_file, map_file):
            old.unlink(missing_ok=True)
    return ShopperSet(ids, shoppers.vectors, cut_out, record)


def load_query_map(data_dir: Path, collection: str, vector: str) -> QueryMap | None:
    """The collection's query map for the backbone `vector`, or None without one (a
    collection ingested before it, or with --shopper-photos 0)."""
    record = read_shopper_record(data_dir, collection)
    if record is None or record.get("backbone") != vector or not record.get("map_file"):
        return None
    return QueryMap.load(shopper_dir(data_dir, collection) / record["map_file"])
