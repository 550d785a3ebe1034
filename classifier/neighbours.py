"""Tags voted by a product's nearest labelled products in the `tuned` vector.

A `finetune` classifier's tuned vector (its backbone's features) puts products of one type,
gender and category together. Voting among the 20 nearest labelled products tagged the shared
catalog's held-out test products better than the network's own head did (docs/classifier.md,
"Classifier"), and a near-duplicate photo of a labelled product gets that product's label.
Wherever a collection's tuned vectors are current (ingest.tuned), its products are tagged by
their neighbours (never by themselves), and so is a query photo (by the store's nearest).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classifier.schemes import IGNORE, TUNED_VECTOR, SchemeClasses, tag_payload

NEIGHBOURS = 20
# A neighbour's weight: exp((its cosine - the best neighbour's) / TEMPERATURE). 20 and 0.02
# were chosen on the validation part (neighbours from the train part only), then measured on
# the test part: 0.922 / 0.980 / 0.915 against the network's 0.902 / 0.975 / 0.903.
TEMPERATURE = 0.02
LABEL_FIELDS = ["gender", "masterCategory", "subCategory", "articleType"]  # scheme_label's
# In each point's payload: the classifier model whose tuned vectors voted its tags; None for
# tags from the network itself (ingest.tuned re-tags those once the vectors are current).
VOTED_FIELD = "pred_voted_by"
# In the collection's metadata: true while a vote of every product is under way.
VOTE_PENDING_KEY = "vote_everyone_pending"


def vote(
    schemes: Sequence[SchemeClasses],
    neighbour_payloads: Sequence[Sequence[dict]],
    cosines: Sequence[Sequence[float]],
) -> list[np.ndarray]:
    """One (rows x classes) probability matrix per scheme: each row's neighbours vote for
    their labelled class, weighted as TEMPERATURE says, shares of the whole weight; a
    neighbour of a class left out of training (or unlabelled) keeps its share, so the vote is
    less sure. A row without neighbours is all zeros."""
    out = [np.zeros((len(neighbour_payloads), len(sc.classes))) for sc in schemes]
    for row, (payloads, cos) in enumerate(zip(neighbour_payloads, cosines)):
        if not len(payloads):
            continue
        cos = np.asarray(cos, dtype=np.float64)
        weights = np.exp((cos - cos.max()) / TEMPERATURE)
        weights /= weights.sum()
        for sc, probs in zip(schemes, out):
            labels = sc.encode(payloads)
            known = labels != IGNORE
            np.add.at(probs[row], labels[known], weights[known])
    return out


def nearest(
    queries: np.ndarray, memory: np.ndarray, k: int, skip: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of `memory` for each row of `queries` (unit rows, cosine): their
    indexes and cosines, best first. `skip[i]`: a memory row query i must not find (itself),
    or -1."""
    k = min(k, len(memory) - (skip is not None))
    index = np.zeros((len(queries), max(k, 0)), dtype=np.int64)
    cosine = np.zeros((len(queries), max(k, 0)), dtype=np.float32)
    if k <= 0:
        return index, cosine
    for start in range(0, len(queries), 1024):
        scores = queries[start : start + 1024] @ memory.T
        if skip is not None:
            rows = np.arange(len(scores))
            own = skip[start : start + 1024]
            scores[rows[own >= 0], own[own >= 0]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-best, axis=1, kind="stable")
        index[start : start + 1024] = np.take_along_axis(part, order, axis=1)
        cosine[start : start + 1024] = np.take_along_axis(best, order, axis=1)
    return index, cosine


def vote_among(
    schemes: Sequence[SchemeClasses],
    payloads: Sequence[dict],
    vectors: np.ndarray,
    query_rows: np.ndarray,
    memory_rows: np.ndarray,
) -> list[np.ndarray]:
    """Tags (probabilities per scheme) of the products at `query_rows`, voted by their
    NEIGHBOURS nearest among `memory_rows` (rows of `payloads` and unit `vectors`), a
    product never voting for itself."""
    where_in_memory = np.full(len(payloads), -1, dtype=np.int64)
    where_in_memory[memory_rows] = np.arange(len(memory_rows))
    index, cosine = nearest(
        vectors[query_rows], vectors[memory_rows], NEIGHBOURS, where_in_memory[query_rows]
    )
    found = memory_rows[index]
    return vote(schemes, [[payloads[j] for j in row] for row in found], cosine)


def voted_tags(store, collection: str, schemes: Sequence[SchemeClasses], tuned: np.ndarray):
    """Payload-shaped tags of photos outside the collection from their tuned vectors (rows):
    the vote of the store's NEIGHBOURS nearest products."""
    found = store.search_batch(
        collection, tuned, TUNED_VECTOR, NEIGHBOURS, with_payload=LABEL_FIELDS
    )
    payloads = [[h.payload for h in hits] for hits in found]
    probs = vote(schemes, payloads, [[h.score for h in hits] for hits in found])
    return [tag_payload(schemes, probs, row) for row in range(len(found))]


def nearest_labels(
    store, collection: str, ids: Sequence[int], tuned: np.ndarray, k: int
) -> list[list[dict]]:
    """The label payloads of the k nearest other products of each of the collection's `ids`
    (their tuned vectors: rows of `tuned`), nearest first."""
    out = []
    for start in range(0, len(ids), 256):
        found = store.search_batch(
            collection, tuned[start : start + 256], TUNED_VECTOR, k + 1, with_payload=LABEL_FIELDS
        )
        for pid, hits in zip(ids[start : start + 256], found):
            out.append([h.payload for h in hits if h.id != pid][:k])
    return out
