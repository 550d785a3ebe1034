"""What a collection records beside its points: the embedder that made its vectors, the
catalog its photos come from and how they are prepared. Every stage that reads the photos of
stored products (colour, autoencoder, classifier) goes through here, so all of a collection's
vectors see the same pixels, and the search reads the same record as the ingest wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedder.images import CUTOUT_RECIPE, BadImage, open_image, photo_sharpness
from embedder.spec import EmbedderSpec
from qdrant.base import StoreError, VectorStore

EMBEDDER_KEY = "embedder"  # collection metadata: the embedder record (EmbedderSpec)
CATALOG_KEY = "catalog"  # collection metadata: the catalog directory
CUTOUT_KEY = "cutout"  # collection metadata: catalog photos made studio shots before embedding
PHOTO_SIZE_KEY = "photo_size"  # collection metadata: the catalog photos' typical [width, height]
# collection metadata: the catalog photos' typical sharpness (embedder.images.photo_sharpness)
PHOTO_SHARPNESS_KEY = "photo_sharpness"
# collection metadata: the version of the cut-out its photos went through (embedder.images
# CUTOUT_RECIPE); absent in collections cut out before the record, by the first version
CUTOUT_RECIPE_KEY = "cutout_recipe"
PHOTO_SIZE_SAMPLE = 200  # photos whose size typical_photo_size reads
SHARPNESS_SAMPLE = 100  # photos typical_photo_sharpness decodes
NO_IMAGE = Path("<no image path>")  # a point whose payload names no image: fails to decode


class EmbedderMismatch(Exception):
    """The collection was built with another embedder than the one asked for."""


def collection_record(store: VectorStore, collection: str) -> EmbedderSpec | None:
    """The embedder a collection was built with, or None if it has no record."""
    record = store.get_metadata(collection).get(EMBEDDER_KEY)
    return EmbedderSpec.from_record(record) if record else None


def check_embedder(store: VectorStore, collection: str, spec: EmbedderSpec) -> None:
    """Refuse to mix vectors of different embedders in one collection."""
    recorded = collection_record(store, collection)
    if recorded is None:
        return
    have, want = recorded.identity(), spec.identity()
    if have != want:
        diff = [
            f"  {k}: collection has {have[k]!r}, this run has {v!r}"
            for k, v in want.items()
            if have[k] != v
        ]
        raise EmbedderMismatch(
            f"collection {collection!r} was built with another embedder:\n"
            + "\n".join(diff)
            + "\nUse the same --backbone/--weights/--input-size/--preprocess as the collection, "
            "or ingest into another --collection."
        )


def catalog_root(store: VectorStore, collection: str) -> Path:
    root = store.get_metadata(collection).get(CATALOG_KEY)
    if not root:
        raise StoreError(f"collection {collection!r} does not record its catalog directory")
    return Path(root)


def collection_cutout(store: VectorStore, collection: str) -> bool:
    """Whether the collection's photos were cut out (embedder.images.to_studio) before
    embedding. Collections made before the record existed were not."""
    return bool(store.get_metadata(collection).get(CUTOUT_KEY, False))


def needs_recut(store: VectorStore, collection: str) -> bool:
    """Whether the collection's photos were cut out by another version of the cut-out than
    this one: its photos off white are then cut out and embedded again (ingest.sync)."""
    if not store.has_collection(collection) or not collection_cutout(store, collection):
        return False
    return store.get_metadata(collection).get(CUTOUT_RECIPE_KEY, 1) != CUTOUT_RECIPE


def record_cutout_recipe(store: VectorStore, collection: str) -> None:
    """Record that every photo of the collection went through this version of the cut-out."""
    metadata = store.get_metadata(collection)
    store.set_metadata(collection, {**metadata, CUTOUT_RECIPE_KEY: CUTOUT_RECIPE})


def typical_photo_size(paths: Sequence[Path], sample: int = PHOTO_SIZE_SAMPLE) -> list[int] | None:
    """The median [width, height] of an evenly spread `sample` of the photos (read from their
    headers; unreadable ones are passed over), or None if none can be read."""
    from PIL import Image

    step = max(1, len(paths) // sample)
    sizes = []
    for path in list(paths)[::step][:sample]:
        try:
            with Image.open(path) as img:
                sizes.append(img.size)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    if not sizes:
        return None
    return [int(v) for v in np.median(np.array(sizes), axis=0)]


def photo_detail(paths: Sequence[Path]) -> dict:
    """The catalog photos' level of detail as a collection records it: their typical size
    and sharpness (query photos are brought to both: embedder.images.match_detail)."""
    return {
        PHOTO_SIZE_KEY: typical_photo_size(paths),
        PHOTO_SHARPNESS_KEY: typical_photo_sharpness(paths),
    }


def typical_photo_sharpness(paths: Sequence[Path], sample: int = SHARPNESS_SAMPLE) -> float | None:
    """The median photo_sharpness of an evenly spread `sample` of the photos, each at its own
    size (unreadable ones are passed over), or None if none can be read."""
    step = max(1, len(paths) // sample)
    values = []
    for path in list(paths)[::step][:sample]:
        try:
            values.append(photo_sharpness(open_image(path)))
        except BadImage:
            continue
    return round(float(np.median(values)), 4) if values else None


def collection_photo_detail(
    store: VectorStore, collection: str
) -> tuple[tuple[int, int] | None, float | None]:
    """The catalog photos' typical (width, height) and sharpness, which query photos are
    brought to (embedder.images.prepare_query): as the ingest recorded them; for a collection
    made before the record of either, measured on one sample of its stored photos; None for
    what can be had neither way."""
    metadata = store.get_metadata(collection)
    size, sharpness = metadata.get(PHOTO_SIZE_KEY), metadata.get(PHOTO_SHARPNESS_KEY)
    if size is None or sharpness is None:
        try:
            ids = [p.id for p in store.sample(collection, PHOTO_SIZE_SAMPLE)]
            paths = collection_images(store, collection, ids)[1]
        except StoreError:  # no catalog directory recorded
            paths = []
        size = typical_photo_size(paths) if size is None else size
        sharpness = typical_photo_sharpness(paths) if sharpness is None else sharpness
    return (
        (int(size[0]), int(size[1])) if size else None,
        float(sharpness) if sharpness is not None else None,
    )


def collection_images(
    store: VectorStore, collection: str, ids: Sequence[int] | None = None
) -> tuple[list[int], list[Path]]:
    """Point ids and their image files (from the payload and the recorded catalog root)."""
    root = catalog_root(store, collection)
    out_ids, paths = [], []
    for p in store.iter_points(collection, ids):
        rel = (p.payload or {}).get("image")
        out_ids.append(p.id)
        paths.append(root / rel if rel else NO_IMAGE)
    return out_ids, paths


def write_vectors(
    store: VectorStore,
    collection: str,
    vector: str,
    ids: Sequence[int],
    vectors: np.ndarray,
    made_by: dict,
) -> None:
    """Store one named vector of the points, then mark each with `made_by` (a payload field
    naming the model or version): a point is marked only once its vector is written."""
    store.update_vectors(collection, {pid: {vector: v} for pid, v in zip(ids, vectors)})
    store.set_payloads(collection, {pid: made_by for pid in ids})
