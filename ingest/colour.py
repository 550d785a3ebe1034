"""The `colour` named vector of a collection: a colour histogram of every product photo.

No model to train: every point that lacks the vector (payload field `colour_v` not at the
current version) gets it, so an interrupted run, a new product or a collection ingested before
this stage existed are all finished by the next `ingest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from embedder.collection import collection_images, write_vectors
from embedder.colour import COLOUR_DIM, COLOUR_VECTOR, INPUT_SIZE, colour_descriptors
from embedder.decoded import DecodedPhotos
from qdrant.base import VectorStore
from searchctl.reporting import NO_PROGRESS, Action, Progress, StageReport

VERSION_FIELD = "colour_v"  # in each point's payload
VERSION = 1  # bump when the descriptor changes: every point is described again


def ensure_colour(
    store: VectorStore,
    collection: str,
    photos: DecodedPhotos,
    *,
    only: Callable[[int], bool] | None = None,
    batch_size: int = 1024,
    progress: Progress = NO_PROGRESS,
) -> StageReport:
    """Give every point of the collection (or those whose id is `only`) its current colour
    vector, from `photos`."""
    t0 = time.perf_counter()
    store.add_vector(collection, COLOUR_VECTOR, COLOUR_DIM)
    todo = [
        p.id
        for p in store.iter_points(collection)
        if (p.payload or {}).get(VERSION_FIELD) != VERSION and (only is None or only(p.id))
    ]
    progress.phase("colour", len(todo))
    bad: list[tuple[int, str]] = []
    for start in range(0, len(todo), batch_size):
        ids, paths = collection_images(store, collection, todo[start : start + batch_size])
        pixels, good, problems = photos.load(ids, paths, (*INPUT_SIZE, "letterbox"))
        bad += [(ids[i], why) for i, why in problems]
        if good:
            done = [ids[i] for i in good]
            vectors = colour_descriptors(pixels)
            write_vectors(store, collection, COLOUR_VECTOR, done, vectors, {VERSION_FIELD: VERSION})
        progress.advance(len(ids))
    described, seconds = len(todo) - len(bad), round(time.perf_counter() - t0, 1)
    if not described:
        summary = "Every product has its colour vector."
        return StageReport("colour", Action.UP_TO_DATE, summary, {"described": 0}, bad)
    summary = f"Colour vectors for {described:,} products ({seconds:.1f} s)."
    details = {"described": described, "seconds": seconds}
    return StageReport("colour", Action.DESCRIBED, summary, details, bad)
