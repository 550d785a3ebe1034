"""The shopper-photos stage: a seeded sample of catalog products photographed as a shopper
would (embedder.shopper.shopper_photo), embedded the way a query photo is (cut out, brought
to the catalog's detail, pooled with its views), and the query map fitted on them.

Only products the classifier trains on are used: its held-out test products stay unseen, so
the type tagger's test accuracy and `eval --held-out` keep meaning what they say. The set is
made once and kept (its vectors, the map and a record, in the collection's models
directory); a run killed while it works starts it again. Made again when asked for another
count or seed, or after the backbone changed.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from classifier.tagger import read_record as read_classifier_record
from classifier.tagger import tagger_dir
from embedder.collection import (
    collection_cutout,
    collection_images,
    collection_photo_detail,
)
from embedder.colour import COLOUR_VECTOR, colour_descriptors
from embedder.colour import INPUT_SIZE as COLOUR_INPUT_SIZE
from embedder.images import (
    CUTOUT_RECIPE,
    BadImage,
    embed_with_views,
    fit_image,
    open_image,
    prepare_query,
    was_cut_out,
)
from embedder.shopper import (
    QueryMap,
    ShopperSet,
    read_shopper_record,
    save_shopper_set,
    shopper_photo,
)
from embedder.spec import EmbedderSpec
from qdrant.base import VectorStore
from searchctl.reporting import NO_PROGRESS, Action, Progress, StageReport, skipped

STAGE = "shopper_photos"
# Products photographed. On the shared catalog 10,000 (of 35,000 the classifier trains on)
# took generator-1 phone-like photos' type from 0.66 to 0.75 predicted right; the stage takes
# ~3 min on 2 cores (docs/quality.md, "Shoppers' photos, third round").
DEFAULT_COUNT = 10_000
# Bump when shopper_photo or the embedding changes: the set is made again. 2: photos the
# cut-out leaves as they are are brought to the catalog's sharpness, as query photos are.
RECIPE = 2
BATCH = 64
PHOTO_THREADS = 2  # photos are made beside each other (PIL and numpy let go of the GIL)
MIN_MAP_ROWS = 500  # fewer cut-out rows fit no map worth applying


def _held_out(data_dir: Path, collection: str) -> set[int]:
    """The classifier's test products: never photographed here."""
    classifier = read_classifier_record(tagger_dir(data_dir, collection))
    return set(classifier.test_ids) if classifier else set()


def _wanted(spec: EmbedderSpec, count: int, seed: int, held_out: set[int]) -> dict:
    """What a set is made from: another value anywhere makes it again."""
    split = hashlib.sha256(np.array(sorted(held_out), np.int64).tobytes()).hexdigest()[:16]
    return {
        "recipe": RECIPE,
        "cutout_recipe": CUTOUT_RECIPE,  # the photos are cut out as queries are
        "count": count,
        "seed": seed,
        "backbone": spec.vector_name,
        "weights_id": spec.weights_id,
        "held_out": split,
    }


def _sample(store: VectorStore, collection: str, held_out: set[int], count: int, seed: int):
    """A seeded sample of `count` ids of the products the classifier trains on (every
    product but the `held_out` ones), in id order."""
    ids = np.array(sorted(i for i in store.ids(collection) if i not in held_out), np.int64)
    if len(ids) > count:
        ids = np.sort(np.random.default_rng(seed).choice(ids, count, replace=False))
    return ids


def ensure_shopper_photos(
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    data_dir: Path,
    *,
    count: int | None = None,
    seed: int = 0,
    progress: Progress = NO_PROGRESS,
) -> StageReport:
    """Make the collection's shopper photos and query map unless it has them for this
    count (None: the count they were made with, else DEFAULT_COUNT), seed and backbone.
    Skipped for `count` 0 and for a collection that does not cut photos out (its queries are
    searched as they are)."""
    what = "No shopper photos"
    record = read_shopper_record(data_dir, collection)
    if count is None:
        count = record["count"] if record else DEFAULT_COUNT
    if count <= 0:
        return skipped(STAGE, "--shopper-photos 0", what)
    if not collection_cutout(store, collection):
        return skipped(STAGE, "the collection does not cut photos out (--no-cutout)", what)
    held_out = _held_out(data_dir, collection)
    wanted = _wanted(spec, count, seed, held_out)
    if record is not None and all(record.get(k) == v for k, v in wanted.items()):
        summary = f"{record['rows']:,} shopper photos and the query map are up to date."
        return StageReport(STAGE, Action.UP_TO_DATE, summary, {"rows": record["rows"]})
    t0 = time.perf_counter()
    from embedder.model import Embedder  # TensorFlow: only when the set is made

    embedder = Embedder(spec)
    photo_size, sharpness = collection_photo_detail(store, collection)
    sample = _sample(store, collection, held_out, count, seed)
    ids, backbone, colour, cut, bad = [], [], [], [], []
    progress.phase("shopper photos", len(sample))

    def photograph(pid: int, path: Path):
        """A product's shopper photo prepared as a query photo is, or the reason it has none."""
        try:
            shot = shopper_photo(open_image(path), np.random.default_rng([seed, pid]))
        except BadImage as exc:
            return pid, str(exc)
        return pid, prepare_query(shot, photo_size, sharpness)

    with ThreadPoolExecutor(max_workers=PHOTO_THREADS) as pool:
        for start in range(0, len(sample), BATCH):
            chunk = [int(i) for i in sample[start : start + BATCH]]
            made = pool.map(photograph, *collection_images(store, collection, chunk))
            photos = []
            for pid, photo in made:
                if isinstance(photo, str):
                    bad.append((pid, photo))
                else:
                    ids.append(pid)
                    photos.append(photo)
            if photos:
                cuts = [was_cut_out(p) for p in photos]
                size = (spec.input_height, spec.input_width)
                pixels = np.stack([fit_image(p, *size) for p in photos])
                backbone.append(embed_with_views(embedder.embed, pixels, cuts))
                colour_pixels = [fit_image(p, *COLOUR_INPUT_SIZE, "letterbox") for p in photos]
                colour.append(colour_descriptors(np.stack(colour_pixels)))
                cut += cuts
            progress.advance(len(chunk))
    rows = _save(store, collection, spec, data_dir, wanted, ids, backbone, colour, cut)
    seconds = round(time.perf_counter() - t0, 1)
    summary = (
        f"{rows['rows']:,} shopper photos of catalog products ({rows['cut_out']:,} cut out), "
        + ("a query map fitted" if rows["map"] else "too few cut out for a query map")
        + f" ({seconds:.0f} s)."
    )
    return StageReport(STAGE, Action.TRAINED, summary, {**rows, "seconds": seconds}, bad)


def _save(store, collection, spec, data_dir, wanted, ids, backbone, colour, cut) -> dict:
    """The set, and the query map fitted on its cut-out rows against their products' stored
    vectors (none from fewer than MIN_MAP_ROWS)."""
    cut_arr, ids_arr = np.array(cut, bool), np.array(ids, np.int64)
    empty = np.zeros((0, spec.dim), np.float32)
    vectors = {
        spec.vector_name: np.concatenate(backbone) if backbone else empty,
        COLOUR_VECTOR: np.concatenate(colour) if colour else np.zeros((0, 1), np.float32),
    }
    query_map = None
    fitted = ids_arr[cut_arr].tolist()
    if len(fitted) >= MIN_MAP_ROWS:
        name = spec.vector_name
        stored = {
            p.id: p.vectors[name]
            for p in store.retrieve(collection, fitted, with_vectors=[name])
            if p.vectors and name in p.vectors
        }
        keep = np.array([i in stored for i in fitted], bool)
        photos = vectors[name][cut_arr][keep]
        products = np.stack([stored[i] for i in fitted if i in stored])
        query_map = QueryMap.fit(photos, products)
    shoppers = ShopperSet(ids_arr, vectors, cut_arr, wanted)
    saved = save_shopper_set(data_dir, collection, shoppers, query_map)
    return {
        "rows": saved.record["rows"],
        "cut_out": saved.record["cut_out"],
        "map": query_map is not None,
    }
