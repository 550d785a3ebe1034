"""One product at a time, outside a catalog run: add or replace a product with its photo,
delete one by id (the HTTP API's writes).

A product put here gets exactly what an ingest gives it: its photo is kept under the data
dir (`uploads/<collection>/`), the backbone stage embeds it (a replaced product's point is
replaced whole) and every later stage gives it its vectors and tags with the models the
collection has. The catalog stays the source of truth: a later `ingest` of the catalog
deletes products that are not in it, unless `--keep-missing`.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from embedder.collection import catalog_root
from embedder.images import open_image
from ingest.catalog import Catalog, Product
from ingest.pipeline import ingest_catalog
from ingest.plan import StageContext, StagePlan, run_stages
from ingest.sync import record_changes

UPLOADS = "uploads"
MAX_LABEL_CHARS = 500
PHOTO_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


def uploads_dir(data_dir: Path, collection: str) -> Path:
    """Where the photos of products put through the API are kept."""
    return Path(data_dir).expanduser() / UPLOADS / collection


@dataclass
class PutResult:
    id: int
    replaced: bool
    photo: str
    stages: dict
    seconds: float

    def to_json(self) -> dict:
        return {"id": self.id, "replaced": self.replaced, "photo": self.photo,
                "stages": self.stages, "seconds": round(self.seconds, 2)}  # fmt: skip


def collection_plan(store, collection: str, data_dir: Path) -> StagePlan:
    """The stages the collection has: its colour and autoencoder vectors, its classifier
    (with the tuned vectors and label taggers that come with it)."""
    from classifier.train import has_classifier
    from embedder.autoencoder import VECTOR_NAME, autoencoder_dir, read_record
    from embedder.colour import COLOUR_VECTOR

    sizes = store.vector_sizes(collection)
    autoencoder = VECTOR_NAME in sizes and read_record(autoencoder_dir(data_dir, collection))
    return StagePlan(
        colour=COLOUR_VECTOR in sizes,
        autoencoder=bool(autoencoder),
        classifier=has_classifier(data_dir, collection),
    )


def check_labels(labels: dict) -> dict:
    """Labels as a styles.csv row gives them: text or whole numbers, short; no id."""
    clean = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not key or len(key) > 100 or key == "id":
            raise ValueError(f"label name {key!r}: 1-100 characters, not 'id'")
        if isinstance(value, bool) or (value is not None and not isinstance(value, str | int)):
            raise ValueError(f"label {key!r}: text or a whole number, got {value!r}")
        if isinstance(value, str) and len(value) > MAX_LABEL_CHARS:
            raise ValueError(f"label {key!r}: at most {MAX_LABEL_CHARS} characters")
        clean[key] = value
    return clean


def put_product(
    context: StageContext, product_id: int, labels: dict, photo: bytes, embedder
) -> PutResult:
    """Add or replace product `product_id` with `labels` and `photo` (bytes); `embedder` is a
    loaded backbone (embedder.model.Embedder) of the collection's spec. A photo that does not
    decode raises BadImage before anything is written."""
    t0 = time.perf_counter()
    if not 0 <= product_id < 2**63:
        raise ValueError(f"product ids are whole numbers from 0: {product_id}")
    labels = check_labels(labels)
    image = open_image(photo)  # BadImage: nothing written
    store, name = context.store, context.collection
    replaced = bool(store.retrieve(name, [product_id]))
    folder = uploads_dir(context.data_dir, name)
    path = _write_photo(folder, product_id, photo, PHOTO_SUFFIX.get(image.format or "", ".jpg"))
    catalog = Catalog(
        catalog_root(store, name),
        ["id", *labels],
        [Product(product_id, {"id": product_id, **labels}, path)],
    )
    report = ingest_catalog(
        catalog, store, name, context.spec, make_embedder=lambda _: embedder,
        embed_again=[product_id], optimize=False,
    )  # fmt: skip
    if report.bad_images:
        raise ValueError(f"product {product_id}: {report.bad_images[0][1]}")
    stages = run_stages(context)
    record_changes(store, name, 1)
    return PutResult(
        product_id, replaced, str(path), {k: v.summary for k, v in stages.items()},
        time.perf_counter() - t0,
    )  # fmt: skip


def delete_product(context: StageContext, product_id: int) -> bool:
    """Delete product `product_id` (and its photo, if it was put through the API); False if
    the collection has no such product."""
    store, name = context.store, context.collection
    if not store.retrieve(name, [product_id]):
        return False
    store.delete(name, [product_id])
    for old in uploads_dir(context.data_dir, name).glob(f"{product_id}.*"):
        old.unlink(missing_ok=True)
    record_changes(store, name, 1)
    return True


def _write_photo(folder: Path, product_id: int, photo: bytes, suffix: str) -> Path:
    """The photo as <id><suffix>, written whole or not at all; other files of the id go."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{product_id}{suffix}"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{product_id}.")
    with os.fdopen(fd, "wb") as f:
        f.write(photo)
    os.replace(tmp, path)
    for old in folder.glob(f"{product_id}.*"):
        if old != path:
            old.unlink(missing_ok=True)
    return path
