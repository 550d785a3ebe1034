"""Which model made a collection's `tuned` vectors (made by ingest.tuned): each point's payload
names it (MODEL_FIELD), and the collection's metadata says whether every point's vector is the
current classifier's (CURRENT_KEY). The search, the label taggers and the classifier's vote
read this record; only the tuned-vector stage writes it.
"""

from __future__ import annotations

from classifier.tagger import CATALOG_ZOOM
from qdrant.base import VectorStore

MODEL_FIELD = "tuned_model"  # in each point's payload
# In the collection's metadata: the mark (tuned_mark) of every point's tuned vector, or None
# while some are missing or the classifier there is not the one that made them (stale).
CURRENT_KEY = "tuned_model"
# How a photo becomes its stored vector; a store made another way is re-embedded.
RECIPE = f"mean of photo, zoom {CATALOG_ZOOM} and mirrors"


def tuned_mark(model_file: str) -> str:
    """What a tuned vector made by `model_file` with today's RECIPE is marked with."""
    return f"{model_file}+{RECIPE}"


def tuned_current(store: VectorStore, collection: str, model_file: str | None = None) -> bool:
    """Every point's tuned vector comes from the collection's classifier (the default search
    blends them only then), and, if given, from `model_file` with today's recipe (a store
    made by an older searchctl is not, until `ingest`, `tag` or `train` re-embeds it)."""
    made_by = store.get_metadata(collection).get(CURRENT_KEY)
    return bool(made_by) and (model_file is None or made_by == tuned_mark(model_file))


def mark_tuned(store: VectorStore, collection: str, mark: str | None) -> None:
    metadata = store.get_metadata(collection)
    if metadata.get(CURRENT_KEY) != mark:
        metadata[CURRENT_KEY] = mark
        store.set_metadata(collection, metadata)
