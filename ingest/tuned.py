"""The `tuned` named vector: a `finetune` classifier's backbone features of every product.

Trained on the catalog's labels, these features put products of one type, gender and category
closer than ImageNet features do, and find the very product in a phone-like photo less often
(docs/quality.md): the default search adds their cosine to its re-rank of the
backbone's neighbours, and `searchctl query --vector tuned` searches them. A product's vector
is the mean of four views of its photo (Tagger.embed_catalog). Each point records which model
and recipe made its vector (`tuned_model`, tuned_mark): a retrained finetune classifier, or a
new recipe, re-embeds every point, and an interrupted run is finished by the next one. With
every vector made, the products' tags are voted by their neighbours in it
(classifier.neighbours).
"""

from __future__ import annotations

import time
from pathlib import Path

from classifier.neighbours import VOTED_FIELD
from classifier.schemes import TUNED_VECTOR
from classifier.tagger import Tagger, read_record, tagger_dir
from classifier.train import tag_by_neighbours, vote_pending
from classifier.tuned import MODEL_FIELD, mark_tuned, tuned_mark
from embedder.collection import collection_images, write_vectors
from embedder.decoded import DecodedPhotos
from qdrant.base import VectorStore
from searchctl.reporting import NO_PROGRESS, Action, Progress, StageReport, skipped

STAGE = "tuned"


def ensure_tuned(
    store: VectorStore,
    collection: str,
    data_dir: Path,
    photos: DecodedPhotos,
    *,
    batch_size: int = 512,
    progress: Progress = NO_PROGRESS,
) -> StageReport:
    """Give every point the tuned vector of the collection's `finetune` classifier (skipped,
    with the reason, for another kind or none); then, every vector current, tag the points
    that the network tagged by their neighbours' vote (classifier.train.tag_by_neighbours)."""
    t0 = time.perf_counter()
    directory = tagger_dir(data_dir, collection)
    record = read_record(directory)
    if record is None or record.kind != "finetune":
        if TUNED_VECTOR in store.vector_sizes(collection):
            mark_tuned(store, collection, None)  # made by a classifier that is gone: stale
        kind = record.kind if record else "no"
        reason = f"{kind} classifier: only finetune has one"
        return skipped(STAGE, reason, "No tuned vectors")
    current = tuned_mark(record.model_file)
    store.add_vector(collection, TUNED_VECTOR, int(record.embedder["dim"]))
    payloads = {p.id: p.payload or {} for p in store.iter_points(collection)}
    todo = [pid for pid, p in payloads.items() if p.get(MODEL_FIELD) != current]
    progress.phase("tuned vector", len(todo))
    if not todo:
        mark_tuned(store, collection, current)
        unvoted = any(p.get(VOTED_FIELD) != record.model_file for p in payloads.values())
        voted = 0
        if unvoted or not record.neighbour_metrics or vote_pending(store, collection):
            voted = tag_by_neighbours(store, collection, directory, record, everyone=False)
        summary = "Every product has its tuned vector." + _voted(voted)
        return StageReport(STAGE, Action.UP_TO_DATE, summary, {"embedded": 0, "voted": voted})
    mark_tuned(store, collection, None)  # until every point is done
    tagger = Tagger(directory)
    height, width, _ = record.input_shape
    bad: list[tuple[int, str]] = []
    for start in range(0, len(todo), batch_size):
        ids, paths = collection_images(store, collection, todo[start : start + batch_size])
        pixels, good, problems = photos.load(ids, paths, (height, width, "letterbox"))
        bad += [(ids[i], why) for i, why in problems]
        if good:
            done = [ids[i] for i in good]
            vectors = tagger.embed_catalog(pixels)
            write_vectors(store, collection, TUNED_VECTOR, done, vectors, {MODEL_FIELD: current})
        progress.advance(len(ids))
    voted = 0
    if not bad:
        mark_tuned(store, collection, current)
        voted = tag_by_neighbours(store, collection, directory, record, everyone=True)
    embedded, seconds = len(todo) - len(bad), round(time.perf_counter() - t0, 1)
    summary = (
        f"Tuned vectors (the finetune classifier's features) for {embedded:,} products "
        f"({seconds:.1f} s): the default search re-ranks with them." + _voted(voted)
    )
    details = {"embedded": embedded, "voted": voted, "seconds": seconds}
    return StageReport(STAGE, Action.EMBEDDED, summary, details, bad)


def _voted(voted: int) -> str:
    return f" Tags voted by their nearest products for {voted:,} products." if voted else ""
