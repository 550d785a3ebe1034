"""Query a collection by photo or by catalog product, with the embedder it was built with.

`search(store, collection, SearchRequest(...))` is the one search call: the CLI's `query`,
and any server, call it; `eval` runs the same Blend and Searcher over many queries.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.label_tags import LabelTagger, load_label_taggers
from classifier.neighbours import LABEL_FIELDS, voted_tags
from classifier.schemes import (
    COLOUR_TAG,
    FINE_TYPE_TAG,
    TAGS,
    TUNED_VECTOR,
    conf_field,
    pred_field,
    tag_label,
    tag_payload,
)
from embedder.collection import (
    collection_photo_detail,
    collection_record,
    needs_recut,
)
from embedder.colour import COLOUR_VECTOR, cast_tolerant_descriptors, colour_descriptors
from embedder.colour import INPUT_SIZE as COLOUR_INPUT
from embedder.images import (
    BadImage,
    embed_with_views,
    fetch_image,
    fit_image,
    is_url,
    open_image,
    prepare_query,
    was_cut_out,
)
from embedder.shopper import load_query_map
from embedder.spec import IMAGENET, EmbedderSpec, WeightsUnavailable, sha256_file
from ingest.catalog import TEXT_FIELD
from qdrant.base import (
    TEXT_INDEX,
    Hit,
    ReadOnlyCollection,
    StoreError,
    VectorStore,
    Where,
    Words,
    unit_rows,
)
from searchctl.config import default_data_dir
from searchctl.duplicates import collapse_duplicates

INTEGER_FIELDS = ("id", "year")
AUTOENCODER = "autoencoder"  # the named vector of embedder/autoencoder.py
DEDUPE_FETCH, DEDUPE_FETCH_EXTRA = 3, 10  # --dedupe fetches 3x the hits asked, plus 10
SAME_TYPE_FIELD = "pred_articleType"  # --same-type: hits of the query's predicted articleType


@dataclass(frozen=True)
class CutoutWeights:
    """A blend's weights for a photo that was cut out of its background (a shopper's photo,
    was_cut_out), in place of its own: for a tinted, tilted photo, colour tells the very
    product from look-alikes of its type better, and its predicted tags are less sure. The
    candidates are the same for every query."""

    colour_weight: float
    tag_weight: float
    tuned_weight: float
    type_weight: float = 0.0
    type_voters: int = 0


WEIGHTS = tuple(f.name for f in dataclass_fields(CutoutWeights))  # the Blend fields they replace


@dataclass(frozen=True)
class Blend:
    """The default search: the shape vector's `candidates` nearest products, re-ranked by
    shape cosine + colour_weight x colour cosine + tag_weight x tag agreement (see
    tag_agreement: the query's predicted gender+masterCategory, subCategory, articleType and
    baseColour against the candidate's labels or predicted tags, weighted by both
    confidences) + tuned_weight x cosine of the `tuned` vector (a `finetune` classifier's
    features; 0 where the collection has none). With a tuned weight, the tuned vector's
    `tuned_candidates` nearest products join the candidates,
    scored by their shape cosine like the others: a tinted, tilted phone photo often has
    its product among those and not among the shape vector's neighbours.

    The defaults were chosen with `searchctl eval` on the shared catalog (docs/quality.md, "Search
    quality"): a re-rank of the shape vector's neighbours, so colour decides between products
    of like shape and never pulls in a sock for its colour. A tag weight of 0.2 matched
    labels a little better but found the very product in 4 points fewer phone-like photos,
    whose predicted tags are less sure. `cut_out`, where set, holds the weights for a photo
    cut out of its background (for_photo).

    Candidates whose shape and colour cosines both reach `near_exact` are near-exact matches
    of the photo (the very product, or one that looks the same): they keep the top, in
    blended order, above every look-alike the side scores would lift past them (rerank). So
    is the shape search's nearest candidate when its colour reaches `near_exact` and its
    shape cosine `nearest_shape`: a photo sharper than the catalog's finds its own product
    nearest, at a cosine under near_exact.

    With `type_voters`, the photo's articleType is voted by that many of the shape search's
    nearest candidates (voted_type) in place of its predicted one, and agreeing with it adds
    type_weight x the vote's share; both are set for cut-out photos only (CutoutWeights)."""

    colour_weight: float = 0.3
    tag_weight: float = 0.1
    candidates: int = 50
    tuned_weight: float = 0.0
    tuned_candidates: int = 0
    cut_out: CutoutWeights | None = None
    near_exact: float | None = None
    nearest_shape: float | None = None
    type_weight: float = 0.0
    type_voters: int = 0

    def to_json(self) -> dict:
        return {
            "colour_weight": self.colour_weight,
            "tag_weight": self.tag_weight,
            "tuned_weight": self.tuned_weight,
            "candidates": self.candidates,
            "tuned_candidates": self.tuned_search,
            "tag_weights": dict(TAG_WEIGHTS),  # each tag's share of tag_weight (agreement_weights)
            "cut_out": asdict(self.cut_out) if self.cut_out else None,
            "near_exact": self.near_exact,
            "nearest_shape": self.nearest_shape,
            "type_weight": self.type_weight,
            "type_voters": self.type_voters,
        }

    def for_photo(self, cut_out: bool) -> Blend:
        """The blend a query photo gets: with the `cut_out` weights if it was cut out."""
        if not cut_out or self.cut_out is None:
            return self
        return replace(self, **asdict(self.cut_out), cut_out=None)

    def with_weights(self, **weights: float) -> Blend:
        """These weights (Blend's fields) for every query, a cut-out photo's too."""
        cut = {k: v for k, v in weights.items() if k in WEIGHTS}
        cut_out = replace(self.cut_out, **cut) if self.cut_out and cut else self.cut_out
        return replace(self, **weights, cut_out=cut_out)

    def without_tags(self) -> Blend:
        """This blend without the tag agreement, a cut-out photo's type vote included (it
        was measured with the tags only)."""
        return self.with_weights(tag_weight=0.0, type_weight=0.0, type_voters=0)

    @property
    def tuned_search(self) -> int:
        """How many nearest products of the tuned vector join the candidates."""
        return self.tuned_candidates if self.tuned_weight else 0

    def side_vectors(self) -> dict[str, float]:
        """The named vectors whose cosine adds to the score, with their weights."""
        weights = {COLOUR_VECTOR: self.colour_weight, TUNED_VECTOR: self.tuned_weight}
        return {name: w for name, w in weights.items() if w}

    @property
    def most_added(self) -> float:
        """The most the side scores can add to a shape cosine (cosines and confidences <= 1)."""
        tags = self.tag_weight * sum(TAG_WEIGHTS.values())
        return sum(self.side_vectors().values()) + tags + self.type_weight


# A candidate at least this close to the photo in shape and in colour is the very product (or
# one that looks the same) and keeps the top of the re-rank (Blend.near_exact). Of 500
# queries each, a catalog photo found its product at a shape cosine of 1.0, a studio shot at
# 0.95 or more in 99 % (colour 0.95 or more in 99.6 %), a phone-like photo at 0.95 never;
# chosen on the first two sets, it took the very product in the top 5 from 0.984 to 0.998 (catalog
# photos) and 0.992 to 1.000 (studio shots) at -0.003 of leave-one-out baseColour
# (docs/quality.md, "The very product on top").
NEAR_EXACT = 0.95
# The shape search's nearest candidate, at this shape cosine or more and near-exact in colour,
# keeps the top too (Blend.nearest_shape). The shared originals against a catalog of the same
# photos halved and blurred find their own product at a median shape cosine of 0.93 (0.88 for
# the lowest 5 %), mostly the nearest candidate, and in colour at 0.95 or more: the re-rank
# had pushed 3 % of them out of the top 5 for look-alikes with agreeing tags. Chosen on a
# sharper set of its own (make_query_sets.py --seed 1): product in the top 5 0.954 -> 0.984
# (plain search 0.986); catalog photos, studio shots and phone-like photos unchanged
# (docs/quality.md, "The nearest candidate").
NEAREST_SHAPE = 0.85
# The weights of both default re-ranks were chosen with numpy grids on cached vectors and
# checked with `searchctl eval` (docs/quality.md). For a cut-out photo (a shopper's)
# more colour, fewer tags (and less tuned cosine) found the very product in 8-9 more
# phone-like photos of 100 here (4-5 beside a tuned vector) at the same articleType; such
# weights for every query would have cost catalog and studio queries up to a point of
# articleType, so those keep their own. With those weights 100 candidates rather than 50
# found 2 more of 100 and matched their articleType better, and did not cost catalog queries.
# Agreeing with the candidates' labels (candidate_tag), tags at 0.08 matched labels better
# than at 0.1 and kept 99.6 % of studio shots' own product (0.992 at 0.1).
# A cut-out photo's articleType is voted by its TYPE_VOTERS nearest candidates (voted_type):
# on phone-like photos of the tuning set the vote named it in 0.84 of them, the type tagger
# in 0.71. Agreeing with the vote at SHOPPER_TYPE_WEIGHT more took their articleType match
# of the top 5 from 0.737 to 0.798 at the same share of the very product (0.830); 0.03 gave
# 0.804 for 0.006 of the product, mixing the tagger's tag into the vote no better
# (docs/quality.md, "Shoppers' photos, fourth round").
TYPE_VOTERS = 5
SHOPPER_TYPE_WEIGHT = 0.02
# How sharply the vote favours the nearest: a voter's weight is exp((cosine - the nearest
# candidate's) / VOTE_SHARPNESS); 0.01 named the type in 0.840 of the tuning photos, 0.005 0.842
# and matched articleType better (0.798 against 0.792).
VOTE_SHARPNESS = 0.005
DEFAULT_BLEND = Blend(
    tag_weight=0.08,
    candidates=100,
    cut_out=CutoutWeights(
        colour_weight=0.7,
        tag_weight=0.02,
        tuned_weight=0.0,
        type_weight=SHOPPER_TYPE_WEIGHT,
        type_voters=TYPE_VOTERS,
    ),
    near_exact=NEAR_EXACT,
    nearest_shape=NEAREST_SHAPE,
)

# The default re-rank of a collection with a tuned vector (a finetune classifier's features):
# its cosine at weight 1; its 50 nearest products join the shape vector's 100 candidates (a
# tinted, tilted phone photo often has its product among those and not the shape vector's
# 50 nearest); tags at 0.11. Tags at 0.1 had counted the classifier's features twice, so
# they were halved to 0.05; since the agreement reads the candidates' labels and a predicted
# colour, 0.11 matched the classifier's held-out products' labels better than 0.05 (gender
# +0.7 points, articleType +0.3, baseColour +3.3; 0.08 was within 0.05 points of it or
# behind) and kept 99.8 % of studio shots' own product (docs/quality.md, "The finetune default").
TUNED_BLEND = Blend(
    colour_weight=0.3,
    tag_weight=0.11,
    candidates=100,
    tuned_weight=1.0,
    tuned_candidates=50,
    cut_out=CutoutWeights(colour_weight=0.7, tag_weight=0.02, tuned_weight=0.8),
    near_exact=NEAR_EXACT,
    nearest_shape=NEAREST_SHAPE,
)


# The tags for which a candidate's own catalog label stands for its predicted tag, where it has
# one: on the classifier's held-out products, agreeing with the candidates' gender+master and
# articleType labels, rather than their predicted tags, matched gender 1.3 and articleType 0.7
# points better; with the subCategory label too, subCategory and articleType lost
# (docs/quality.md, "Labels, not predictions, of the candidates"). baseColour is a label only
# (docs/quality.md, "Colour tags").
LABELLED_TAGS = ("gender_master", "articleType", COLOUR_TAG, FINE_TYPE_TAG)
# The weight of the articleType over every type (classifier.label_tags) in the agreement, where
# the query has it, in place of the classifier's articleType (1, like every other tag). The
# classifier leaves out types under 500 products, a fifth of the shared catalog; on its
# held-out products this took the articleType match of the top 5 from 0.842 to 0.863 beside
# a tuned vector and from 0.772 to 0.816 without, at tag weights 0.11 and 0.08 (numpy on cached
# vectors; docs/quality.md, "Every articleType").
FINE_TYPE_WEIGHT = 1.8
# The weight of the predicted baseColour in the agreement. At 1 the default searches' top 5
# matched the query's baseColour in 0.626-0.635 of leave-one-out queries, at 1.4 in
# 0.648-0.653 (held out +1.2-1.7 points), for 0.2-0.4 points of articleType and 0.994 rather
# than 0.996-0.998 of studio shots' own product (`searchctl eval`; docs/quality.md, "The
# colour tag at 1.4x").
COLOUR_TAG_WEIGHT = 1.4
# Every tag's weight in the agreement (agreement_weights picks a query's), as eval and
# query --json report them with the blend.
TAG_WEIGHTS = {
    **dict.fromkeys(TAGS, 1.0),
    COLOUR_TAG: COLOUR_TAG_WEIGHT,
    FINE_TYPE_TAG: FINE_TYPE_WEIGHT,
}
# The payload fields tag_agreement reads: all a candidate brings from the search (the hits
# kept get their whole payload after the re-rank; 100 whole payloads took 2 ms to transfer).
TAG_FIELDS = [
    *(field(tag) for tag in TAGS for field in (pred_field, conf_field)),
    *LABEL_FIELDS,
    COLOUR_TAG,
]


def candidate_tag(tag: str, hit: Mapping) -> tuple[str | None, float]:
    """A candidate's tag (a scheme or baseColour) and how sure it is: its catalog label
    (sure) for the LABELLED_TAGS where it has one, else its predicted tag and that
    prediction's confidence."""
    if tag in LABELLED_TAGS:
        label = tag_label(tag, hit)
        if label is not None:
            return label, 1.0
    return hit.get(pred_field(tag)), hit.get(conf_field(tag), 1.0)


def agreement_weights(query: Mapping) -> dict[str, float]:
    """The tags the agreement counts for a query, with their weights: the classifier's
    schemes, 1 each, the baseColour at COLOUR_TAG_WEIGHT and the articleType over every type
    (FINE_TYPE_WEIGHT) in place of the classifier's where the query has it."""
    weights = dict(TAG_WEIGHTS)
    has_fine_type = query.get(pred_field(FINE_TYPE_TAG)) is not None
    del weights["articleType" if has_fine_type else FINE_TYPE_TAG]
    return weights


def tag_agreement(
    query: Mapping | None, hit: Mapping | None, terms: list[tuple[str, str, float]] | None = None
) -> float:
    """Sum over the agreement_weights' tags of weight x [the query's predicted tag is the
    candidate's] x query confidence x candidate's confidence (candidate_tag). `query` holds
    payload-shaped predicted tags (pred_<tag>, pred_<tag>_conf), `hit` a payload.

    Every scheme counts, not only articleType: on held-out products the predicted gender
    lifted the gender match of the top 5 from 0.842 to 0.880. The confidences keep a doubtful
    prediction from pulling its class in; with them this came within 0.002 of the dot product
    of the full probability vectors, which would cost 49 more floats a point. `terms`: the
    query's agreement_terms, if made already."""
    if not query or not hit:
        return 0.0
    total = 0.0
    for tag, mine, weight in terms if terms is not None else agreement_terms(query):
        theirs, sure = candidate_tag(tag, hit)
        if theirs == mine:
            total += weight * sure
    return total


def voted_type(
    hits: Sequence[Hit], tags_of: Mapping[int, Mapping | None], voters: int
) -> dict[str, object]:
    """Payload-shaped articleType tag (pred_/conf_ of FINE_TYPE_TAG) voted by the `voters`
    nearest `hits` (by shape cosine): each its candidate_tag, weighted by how sure that is
    and by exp((cosine - the nearest's) / VOTE_SHARPNESS); the share of the winner is its
    confidence. {} when none of them has a type."""
    votes: dict[str, float] = {}
    nearest = sorted(hits, key=lambda h: -h.score)[:voters]
    for hit in nearest:
        kind, sure = candidate_tag(FINE_TYPE_TAG, tags_of.get(hit.id) or {})
        if kind is not None:
            weight = sure * np.exp((hit.score - nearest[0].score) / VOTE_SHARPNESS)
            votes[kind] = votes.get(kind, 0.0) + float(weight)
    if not votes:
        return {}
    best = max(votes, key=votes.__getitem__)
    share = votes[best] / sum(votes.values())
    return {pred_field(FINE_TYPE_TAG): best, conf_field(FINE_TYPE_TAG): round(share, 4)}


def agreement_terms(query: Mapping) -> list[tuple[str, str, float]]:
    """(tag, the query's predicted tag, weight x its confidence) for each tag of
    agreement_weights the query has: made once a query, not once a candidate."""
    terms = []
    for tag, weight in agreement_weights(query).items():
        mine = query.get(pred_field(tag))
        if mine is not None:
            terms.append((tag, mine, weight * query.get(conf_field(tag), 1.0)))
    return terms


def default_vector(store: VectorStore, collection: str, spec: EmbedderSpec | None = None) -> str:
    """The vector searched when none is asked for: the backbone's. The `tuned` vector matches
    labels better (docs/quality.md) but found the very product in phone-like photos
    far less often (0.394 of 500 against 0.596), and that is what a shopper's photo is."""
    spec = spec or collection_record(store, collection)
    return spec.vector_name if spec else next(iter(store.vector_sizes(collection)))


def default_blend(store: VectorStore, collection: str, vector: str | None = None) -> Blend | None:
    """The re-rank `searchctl query` applies by default to `vector` (default: the default
    vector) here: colour when the collection has colour vectors, tags when its products carry
    predicted tags and the vector is not the tuned one (which already ranks by type: a type
    boost cost it a point); the tuned vector's cosine when the collection has one and it is
    not the vector searched and they are current (ingest.tuned), and then TUNED_BLEND's
    weights; None when none of them. A cut-out photo's type vote goes with the tags; its own
    weights are the backbone's alone (measured on its search only)."""
    from classifier.tuned import tuned_current

    backbone = default_vector(store, collection)
    vector = vector or backbone
    names = store.vector_sizes(collection)
    has_colour = COLOUR_VECTOR in names
    has_tuned = TUNED_VECTOR in names and vector != TUNED_VECTOR
    has_tuned = has_tuned and tuned_current(store, collection)
    some = store.sample(collection, 1)
    has_tags = bool(some) and (some[0].payload or {}).get(SAME_TYPE_FIELD) is not None
    has_tags = has_tags and vector != TUNED_VECTOR
    if not (has_colour or has_tags or has_tuned):
        return None
    base = TUNED_BLEND if has_tuned else DEFAULT_BLEND
    if vector != backbone:
        base = replace(base, cut_out=None)
    present = {"colour_weight": has_colour, "tuned_weight": has_tuned}
    blend = base.with_weights(**{w: 0.0 for w, has in present.items() if not has})
    return blend if has_tags else blend.without_tags()


def best_cosines(rows: np.ndarray, stored: Mapping[int, np.ndarray]) -> dict[int, float]:
    """id -> the best cosine of a query's `rows` (one vector, or several: a cut-out photo's
    colour under several white balances, Searcher.colour_rows) with its stored unit vector."""
    q = unit_rows(rows)
    return {i: float((q @ v).max()) for i, v in stored.items()}


def add_candidates(hits: list[Hit], extra: list[Hit], shape_scores: Mapping[int, float]):
    """The shape search's `hits` and, after them, those of `extra` (the tuned vector's
    nearest) not among them, scored like them: by their shape cosine (`shape_scores`, id ->
    the query's cosine with the product's shape vector)."""
    seen = {h.id for h in hits}
    new = [h for h in extra if h.id not in seen and h.id in shape_scores]
    return hits + [Hit(h.id, shape_scores[h.id], h.payload) for h in new]


def search_candidates(
    store: VectorStore,
    collection: str,
    query: np.ndarray,
    vector: str,
    query_vectors: Mapping[str, np.ndarray],
    blend: Blend,
    limit: int,
    where: Where | None,
    pool=None,
) -> list[Hit]:
    """The shape vector's `limit` nearest products, and the tuned vector's
    `blend.tuned_search` nearest (add_candidates); the two searches run side by side on
    `pool` (a thread pool: a server store's searches wait on the network; Qdrant Edge's
    hold the GIL). Their payloads hold only what the re-rank reads (TAG_FIELDS)."""
    fields = TAG_FIELDS if blend.tag_weight else False
    shape_args = (collection, query, vector, limit, where, False, fields)
    extra = blend.tuned_search if query_vectors.get(TUNED_VECTOR) is not None else 0
    if not extra or vector == TUNED_VECTOR:  # searching the tuned vector finds them already
        return store.search(*shape_args)
    tuned_query = query_vectors[TUNED_VECTOR]
    tuned_args = (collection, tuned_query, TUNED_VECTOR, extra, where, False, fields)
    if pool is None:
        hits = store.search(*shape_args)
        tuned = store.search(*tuned_args)
    else:
        pending = pool.submit(store.search, *tuned_args)
        hits = store.search(*shape_args)
        tuned = pending.result()
    shape_scores = store.score(collection, query, vector, [h.id for h in tuned])
    return add_candidates(hits, tuned, shape_scores)


@functools.cache
def _side_search_pool():
    """A thread for the tuned search, beside the shape search (search_candidates)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1)


def blended_search(
    store: VectorStore,
    collection: str,
    query: np.ndarray,
    vector: str,
    query_vectors: Mapping[str, np.ndarray],
    query_tags: Mapping | None,
    blend: Blend,
    top: int,
    where: Where | None,
    side_by_side: bool = False,
) -> tuple[list[Hit], dict[str, float]]:
    """The store's half of a blended search: the candidates (search_candidates; the tuned
    search `side_by_side` with the shape search), re-ranked (blend_hits). Run it through
    `store.run`, where the store is. Returns the hits and the seconds of the "search" and
    "rerank" steps."""
    clock = _Clock()
    limit = max(top, blend.candidates)
    pool = _side_search_pool() if side_by_side else None
    hits = search_candidates(
        store, collection, query, vector, query_vectors, blend, limit, where, pool
    )
    clock.lap("search")
    hits = blend_hits(store, collection, hits, query_vectors, query_tags, blend, top)
    clock.lap("rerank")
    return hits, clock.laps


def rerank(
    hits: list[Hit],
    side_scores: Mapping[str, Mapping[int, float]],
    query_tags: Mapping | None,
    tags_of: Mapping[int, Mapping | None],
    blend: Blend,
) -> list[Hit]:
    """The shape search's `hits` in blended order, scored. `side_scores` holds, for each of
    the blend's side vectors the query has (Blend.side_vectors), id -> the query's cosine
    with the hit's vector (best_cosines); `query_tags` and `tags_of` are payload-shaped
    predicted tags (see tag_agreement). Near-exact matches (Blend.near_exact,
    Blend.nearest_shape) come first. With Blend.type_voters the candidates' vote stands for
    the query's articleType (voted_type)."""
    scores = np.array([h.score for h in hits], dtype=np.float64)
    if blend.type_voters:
        query_tags = {**(query_tags or {}), **voted_type(hits, tags_of, blend.type_voters)}
    for name, weight in blend.side_vectors().items():
        of = side_scores.get(name)
        if of is not None:
            scores += weight * np.array([of.get(h.id, 0.0) for h in hits])
    if blend.tag_weight:
        terms = agreement_terms(query_tags) if query_tags else None
        tags = np.array([tag_agreement(query_tags, tags_of.get(h.id), terms) for h in hits])
        scores += blend.tag_weight * tags
    voted = query_tags.get(pred_field(FINE_TYPE_TAG)) if query_tags else None
    if blend.type_weight and voted is not None:
        sure = query_tags.get(conf_field(FINE_TYPE_TAG), 1.0)
        terms = [(FINE_TYPE_TAG, voted, sure)]
        tags = np.array([tag_agreement(query_tags, tags_of.get(h.id), terms) for h in hits])
        scores += blend.type_weight * tags
    if blend.near_exact is not None and len(hits):
        # Lifted by the most the side scores add, a near-exact match outranks every other
        # candidate, whatever its tags. Near-exact in colour too: the same shoe in another
        # colour pinned above look-alikes of the right one cost leave-one-out queries 0.9
        # points of baseColour.
        shape = np.array([h.score for h in hits], dtype=np.float64)
        exact = shape >= blend.near_exact
        colour = side_scores.get(COLOUR_VECTOR) if blend.colour_weight else None
        if colour is not None:
            nearest = int(np.argmax(shape))
            if blend.nearest_shape is not None and shape[nearest] >= blend.nearest_shape:
                exact[nearest] = True
            exact &= np.array([colour.get(h.id, 0.0) for h in hits]) >= blend.near_exact
        scores[exact] = np.maximum(scores[exact], shape[exact]) + blend.most_added
    order = np.argsort(-scores, kind="stable")
    return [Hit(hits[i].id, float(scores[i]), hits[i].payload) for i in order]


def blend_hits(
    store: VectorStore,
    collection: str,
    hits: list[Hit],
    query_vectors: Mapping[str, np.ndarray],
    query_tags: Mapping | None,
    blend: Blend,
    top: int,
) -> list[Hit]:
    """The best `top` of the shape search's `hits`, with their whole payloads. A side vector
    of one row is scored by the store; one of several rows (best_cosines) on its fetched
    vectors."""
    ids = [h.id for h in hits]
    wanted = [v for v in blend.side_vectors() if query_vectors.get(v) is not None]
    several = [v for v in wanted if np.ndim(query_vectors[v]) > 1]
    side_scores = {
        v: store.score(collection, query_vectors[v], v, ids) for v in wanted if v not in several
    }
    if ids and several:
        vectors_of: dict[str, dict[int, np.ndarray]] = {v: {} for v in several}
        for p in store.retrieve(collection, ids, with_vectors=several):
            for v in several:
                if v in p.vectors:
                    vectors_of[v][p.id] = p.vectors[v]
        side_scores.update({v: best_cosines(query_vectors[v], vectors_of[v]) for v in several})
    tags_of = {h.id: h.payload for h in hits}
    kept = rerank(hits, side_scores, query_tags, tags_of, blend)[:top]
    payloads = {p.id: p.payload for p in store.retrieve(collection, [h.id for h in kept])}
    return [Hit(h.id, h.score, payloads.get(h.id)) for h in kept]


@dataclass
class SearchResult:
    query: str
    vector: str
    hits: list[Hit]
    query_payload: dict | None = None  # the product queried with --id
    predicted: dict | None = None  # the query photo's predicted tags (--same-type)
    where: list | None = None
    blend: Blend | None = None  # the re-rank applied to the vector's hits, if any
    notes: list[str] = field(default_factory=list)  # what a person should know of the search
    photo: Image.Image | None = None  # the query photo as the search saw it (cut out)
    seconds: dict[str, float] = field(default_factory=dict)  # decode, embed, search, rerank

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "vector": self.vector,
            "blend": self.blend.to_json() if self.blend else None,
            "predicted": self.predicted,
            "where": [
                [k, {"words": v.text} if isinstance(v, Words) else v] for k, v in self.where or []
            ],
            "hits": [{"id": h.id, "score": h.score, "payload": h.payload} for h in self.hits],
        }


def parse_where(conditions: list[str] | None) -> list[tuple[str, object]]:
    """['gender=Men', 'year=2012'] -> [('gender', 'Men'), ('year', 2012)]."""
    parsed = []
    for text in conditions or []:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"--where takes FIELD=VALUE, got {text!r}")
        if "=" in value:
            raise ValueError(
                f"--where {text!r}: one FIELD=VALUE each (all must hold); repeat --where for "
                "more conditions"
            )
        if key in INTEGER_FIELDS:
            try:
                parsed.append((key, int(value)))
                continue
            except ValueError:
                raise ValueError(f"--where {key} needs an integer, got {value!r}") from None
        parsed.append((key, value))
    return parsed


class _Clock:
    """Seconds spent in each step of a search, added up per step name."""

    def __init__(self):
        self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.laps[step] = self.laps.get(step, 0.0) + now - self.last
        self.last = now

    def add(self, laps: Mapping[str, float]) -> None:
        """Steps timed elsewhere (in the store's process) since the last lap; the time beyond
        their sum (the calls there and back) counts to the first."""
        now = time.perf_counter()
        beyond = max(now - self.last - sum(laps.values()), 0.0)
        for i, (step, seconds) in enumerate(laps.items()):
            self.laps[step] = self.laps.get(step, 0.0) + seconds + (beyond if i == 0 else 0.0)
        self.last = now


@functools.cache
def _blas_threads():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread(method):
    """Run `method` with numpy's BLAS on one thread. A query's matrix products are small,
    and on the 2-core CPU the BLAS threads woken for them fought TensorFlow's own: with one,
    the finetune default's p95 on catalog photos went from 54-55 to 43-46 ms, its p50 from
    36-39 to 32-36 ms (bench/query_latency.py; docs/quality.md, "Latency now")."""

    @functools.wraps(method)
    def limited(*args, **kwargs):
        with _blas_threads().limit(limits=1, user_api="blas"):
            return method(*args, **kwargs)

    return limited


def recorded_spec(store: VectorStore, collection: str, weights: Path | None = None) -> EmbedderSpec:
    """The collection's embedder; `weights` replaces a recorded file path that has moved."""
    spec = collection_record(store, collection)
    if spec is None:
        raise StoreError(f"collection {collection!r} has no embedder record: re-run ingest")
    if spec.weights == IMAGENET:
        return spec
    path = Path(weights).expanduser().resolve() if weights else Path(spec.weights)
    if not path.is_file():
        raise WeightsUnavailable(
            f"the weights file this collection was built with is gone: {path}\n"
            f"Pass --weights with the same file ({spec.weights_id})."
        )
    # Checked every time: a file replaced in place must not embed queries for old vectors.
    if f"sha256:{sha256_file(path)}" != spec.weights_id:
        raise WeightsUnavailable(
            f"{path} is not the weights file collection {collection!r} was built with "
            f"({spec.weights_id}); pass --weights with that file"
        )
    return replace(spec, weights=str(path))


class Searcher:
    """Holds the models warm between queries (the library path behind `searchctl query`).

    Models load on first use: a query on the autoencoder vector never builds the backbone.
    """

    def __init__(
        self,
        store: VectorStore,
        collection: str,
        weights: Path | None = None,
        compiled: bool = True,
        data_dir: Path | None = None,
        with_tags: bool = False,
        cutout: bool = True,
    ):
        """`compiled=False` for a single query (no graph tracing, ~1 s less to the answer).
        `data_dir` holds the collection's trained models (autoencoder, classifier);
        `with_tags` loads the classifier to predict the query photo's tags; `cutout` makes
        photos that are not studio shots look like one (embedder.images.to_studio)."""
        self.store, self.collection, self.compiled = store, collection, compiled
        self.cutout = cutout
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.spec = recorded_spec(store, collection, weights)
        self.photo_size, self.photo_sharpness = collection_photo_detail(store, collection)
        # Its photos went through another version of the cut-out than query photos do.
        self.stale_cutout = needs_recut(store, collection)
        # Added to a cut-out photo's backbone vector before the search (search_rows).
        self.query_map = load_query_map(self.data_dir, collection, self.spec.vector_name)
        self.tagger = None
        # tag -> the collection's label taggers (classifier.label_tags), with the classifier
        self.label_taggers: dict[str, LabelTagger] = {}
        if with_tags:
            from classifier.tagger import Tagger, tagger_dir
            from classifier.train import check_tagger

            self.tagger = Tagger(tagger_dir(self.data_dir, collection))
            check_tagger(self.tagger.record, self.spec, collection)
            from classifier.tuned import CURRENT_KEY

            mark = store.get_metadata(collection).get(CURRENT_KEY)
            self.label_taggers = load_label_taggers(self.data_dir, collection, mark, current=True)
        self._backbone = None
        self._autoencoder = None
        self._finetuned = None
        self._voting: bool | None = None

    @property
    def backbone(self):
        if self._backbone is None:
            from embedder.model import Embedder

            self._backbone = Embedder(self.spec, compiled=self.compiled)
        return self._backbone

    @property
    def tags_from_photo(self) -> bool:
        """The classifier reads the photo itself (`finetune`), not the backbone vector."""
        return self.tagger is not None and self.tagger.record.kind == "finetune"

    @property
    def autoencoder(self):
        if self._autoencoder is None:
            from embedder.autoencoder import AutoencoderEmbedder, autoencoder_dir, check_searchable

            check_searchable(self.store, self.collection, self.data_dir)
            self._autoencoder = AutoencoderEmbedder(autoencoder_dir(self.data_dir, self.collection))
        return self._autoencoder

    @property
    def finetuned(self):
        """The `finetune` classifier that makes the tuned vector (loaded on first use)."""
        if self._finetuned is None:
            from classifier.tagger import Tagger, tagger_dir

            tagger = self.tagger or Tagger(tagger_dir(self.data_dir, self.collection))
            if tagger.record.kind != "finetune":
                raise ValueError(
                    f"collection {self.collection!r} has a {tagger.record.kind} classifier now, "
                    "and only a finetune one makes tuned vectors: search another vector, or "
                    "retrain with `searchctl train classifier --kind finetune`"
                )
            self._finetuned = tagger
        return self._finetuned

    def input_size(self, vector: str) -> tuple[int, int, str]:
        """(height, width, fit) that photos are decoded to for `vector` (TUNED_VECTOR: also
        the photo a `finetune` classifier reads for its tags)."""
        if vector == TUNED_VECTOR:
            height, width, _ = self.finetuned.record.input_shape
            return height, width, "letterbox"
        if vector == AUTOENCODER:
            c = self.autoencoder.config
            return c.input_height, c.input_width, c.fit
        if vector == COLOUR_VECTOR:
            return *COLOUR_INPUT, "letterbox"
        return self.spec.input_height, self.spec.input_width, "letterbox"

    def prepare(self, image, cutout: bool | None = None) -> Image.Image:
        """A query photo decoded once for every vector: its background cut out (to_studio;
        `cutout`: this photo's own choice, else the searcher's) and brought down to the
        catalog photos' level of detail, their size and sharpness (match_detail)."""
        cutout = self.cutout if cutout is None else cutout
        return prepare_query(image, self.photo_size, self.photo_sharpness, cutout)

    def fit(self, photo: Image.Image, vector: str) -> np.ndarray:
        """A prepared photo (prepare) at the vector's input size."""
        return fit_image(photo, *self.input_size(vector))

    def embed_pixels(
        self, pixels: np.ndarray, with_views: Sequence[bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 batch at the backbone's size -> (backbone vectors, input of a `vectors`
        classifier or None). Rows marked in `with_views` (photos cut out of a background: a
        shopper's) are pooled with their test-time views (embed_with_views)."""
        out = embed_with_views(self.backbone.embed, pixels, with_views or [])
        # A vectors-kind classifier was trained on stored vectors, which are unit length.
        tags_from_vectors = self.tagger is not None and not self.tags_from_photo
        return out, unit_rows(out) if tags_from_vectors else None

    def search_rows(self, vectors: np.ndarray, vector: str, cut_out: Sequence[bool]) -> np.ndarray:
        """The rows of `vector` a search sends: a cut-out photo's (a shopper's) backbone
        vector with its query map's direction added (embedder.shopper.QueryMap), which found
        the very product in the top 5 of more phone-like photos (docs/quality.md, "Shoppers'
        photos, third round"); every other row as it is. A cut-out photo that is a catalog
        photo (a stored vector at a cosine of NEAR_EXACT or more; no phone-like photo comes
        that near) keeps its own, so that it finds itself first. The tags read the vectors
        as made."""
        marked = np.flatnonzero(np.asarray(cut_out, bool))
        if self.query_map is None or vector != self.spec.vector_name or not len(marked):
            return vectors
        out = np.array(vectors, np.float32, copy=True)
        nearest = self.store.search_batch(
            self.collection, out[marked], vector, 1, with_payload=False
        )
        away = [row for row, hits in zip(marked, nearest) if not hits or hits[0].score < NEAR_EXACT]
        if away:
            out[away] = self.query_map.apply(out[away])
        return out

    def embed_batch(self, pixels: np.ndarray, vector: str) -> np.ndarray:
        """uint8 batch at input_size(vector) -> that named vector."""
        if vector == AUTOENCODER:
            return self.autoencoder.embed(pixels)
        if vector == COLOUR_VECTOR:
            return colour_descriptors(pixels)
        if vector == TUNED_VECTOR:
            return self.finetuned.embed(pixels)
        return self.embed_pixels(pixels)[0]

    def colour_rows(self, photo: Image.Image, plain: np.ndarray | None = None) -> np.ndarray:
        """A prepared photo's colour vector (`plain`, if already made); for a cut-out one (a
        photo from outside the studio, with its camera's white balance), its K colour vectors
        under other white balances, of which the re-rank takes the best
        (cast_tolerant_descriptors)."""
        if was_cut_out(photo):
            return cast_tolerant_descriptors(self.fit(photo, COLOUR_VECTOR))
        if plain is not None:
            return plain
        return colour_descriptors(self.fit(photo, COLOUR_VECTOR)[None])[0]

    def label_tags(self, photos: list[Image.Image], known: Mapping[str, np.ndarray]) -> list[dict]:
        """The label taggers' predicted tags of prepared photos, from `known` (named vector ->
        the photos' rows, e.g. the backbone's) and the other vectors they read, made here (the
        plain colour vector; the tuned vector); {} each without label taggers."""
        tags: list[dict] = [{} for _ in photos]
        vectors = dict(known)
        for tagger in self.label_taggers.values():
            for name in tagger.vectors:
                if name not in vectors:
                    pixels = np.stack([self.fit(p, name) for p in photos])
                    vectors[name] = self.embed_batch(pixels, name)
            tags = [{**t, **mine} for t, mine in zip(tags, tagger.tags(vectors))]
        return tags

    @property
    def voting(self) -> bool:
        """A photo's tags are voted by the products nearest its tuned vector: a `finetune`
        classifier whose tuned vectors are all made (as the collection's own tags are,
        classifier.neighbours)."""
        if self._voting is None:
            from classifier.tuned import tuned_current

            self._voting = self.tags_from_photo and tuned_current(
                self.store, self.collection, self.tagger.record.model_file
            )
        return self._voting

    def photo_tags(self, probs: list[np.ndarray], tuned: np.ndarray) -> list[dict]:
        """Tags of photos from one pass through the `finetune` network (predict_and_embed):
        the vote of their tuned vectors' nearest products where `voting` (voted_tags), else the
        network's own probabilities."""
        schemes = self.tagger.record.schemes
        if self.voting:
            return voted_tags(self.store, self.collection, schemes, tuned)
        return [tag_payload(schemes, probs, i) for i in range(len(tuned))]

    def predict_tags(self, features: np.ndarray) -> list[dict]:
        """Tags of a batch of classifier inputs (photos for a `finetune` classifier)."""
        if self.voting:
            return self.photo_tags(*self.tagger.predict_and_embed(features))
        probs = self.tagger.predict(features)
        return [tag_payload(self.tagger.record.schemes, probs, i) for i in range(len(features))]

    def embed_image(self, image, vector: str | None = None) -> np.ndarray:
        """A photo's named vector as its search queries with it (a cut-out photo's backbone
        vector pooled with its views, embed_pixels, and its query map's added: search_rows)."""
        vector = vector or self.spec.vector_name
        photo = self.prepare(image)
        pixels = self.fit(photo, vector)[None]
        if vector == self.spec.vector_name:
            cut = [was_cut_out(photo)]
            return self.search_rows(self.embed_pixels(pixels, cut)[0], vector, cut)[0]
        return self.embed_batch(pixels, vector)[0]

    @one_blas_thread
    def search_image(
        self,
        image,
        top: int = 5,
        vector: str | None = None,
        where: Where | None = None,
        same_type: bool = False,
        blend: Blend | None = None,
        cutout: bool | None = None,
    ) -> SearchResult:
        """Search by photo. `blend` re-ranks the vector's nearest products by colour and
        predicted tags (see Blend; the tags part needs `with_tags`). `cutout`: this photo's
        own choice, else the searcher's."""
        vector = check_vector(self.store, self.collection, vector, self.spec)
        clock = _Clock()
        source, image = image, self.prepare(image, cutout)  # once for all vectors
        clock.lap("decode")
        blend = blend.for_photo(was_cut_out(image)) if blend is not None else None
        where, predicted = list(where or []), None
        views = [was_cut_out(image)]  # a shopper's photo: pooled with its test-time views
        if vector == self.spec.vector_name:
            vectors, features = self.embed_pixels(self.fit(image, vector)[None], views)
            query_vector = vectors[0]
        else:
            query_vector = self.embed_batch(self.fit(image, vector)[None], vector)[0]
            features = None
        query_vectors: dict[str, np.ndarray] = {}
        made: dict[str, np.ndarray] = {}  # the photo's vectors, made once for all readers
        if vector == self.spec.vector_name:
            made[vector] = query_vector
        if self.tags_from_photo:
            features = self.fit(image, TUNED_VECTOR)[None]
            wants_tuned = blend is not None and blend.tuned_weight
            if wants_tuned or self.voting:
                # One pass through the fine-tuned network for the tags and the tuned vector.
                probs, tuned = self.tagger.predict_and_embed(features)
                predicted = self.photo_tags(probs, tuned)[0]
                made[TUNED_VECTOR] = tuned[0]
                if wants_tuned:
                    query_vectors[TUNED_VECTOR] = tuned[0]
        elif self.tagger is not None and features is None:
            features = self.embed_pixels(self.fit(image, self.spec.vector_name)[None], views)[1]
        if self.tagger is not None and predicted is None:
            predicted = self.predict_tags(features)[0]
        if blend is not None and blend.tuned_weight and TUNED_VECTOR not in query_vectors:
            query_vectors[TUNED_VECTOR] = self.embed_batch(
                self.fit(image, TUNED_VECTOR)[None], TUNED_VECTOR
            )[0]
        # Another vector searched: the label tags only where the re-rank reads them.
        wants_labels = vector == self.spec.vector_name or (blend is not None and blend.tag_weight)
        if predicted is not None and self.label_taggers and wants_labels:
            if any(COLOUR_VECTOR in t.vectors for t in self.label_taggers.values()):
                pixels = self.fit(image, COLOUR_VECTOR)[None]
                made[COLOUR_VECTOR] = self.embed_batch(pixels, COLOUR_VECTOR)[0]
            known = {**made, **query_vectors}
            known = {name: v[None] for name, v in known.items() if np.ndim(v) == 1}
            predicted = {**predicted, **self.label_tags([image], known)[0]}
        if same_type:
            if predicted is None:
                raise ValueError("--same-type needs the classifier (Searcher(with_tags=True))")
            where.append((SAME_TYPE_FIELD, predicted[SAME_TYPE_FIELD]))
        query_vector = self.search_rows(query_vector[None], vector, views)[0]
        clock.lap("embed")
        if blend is None:
            hits = self.store.search(self.collection, query_vector, vector, top, where)
            clock.lap("search")
            return SearchResult(
                str(source), vector, hits, predicted=predicted, where=where, photo=image,
                seconds=clock.laps,
            )  # fmt: skip
        if blend.colour_weight and COLOUR_VECTOR in self.store.vector_sizes(self.collection):
            query_vectors[COLOUR_VECTOR] = self.colour_rows(image, made.get(COLOUR_VECTOR))
        clock.lap("embed")
        hits, laps = self.store.run(
            blended_search, self.collection, query_vector, vector, query_vectors, predicted,
            blend, top, where, True,
        )  # fmt: skip
        clock.add(laps)
        return SearchResult(
            str(source), vector, hits, predicted=predicted, where=where, blend=blend, photo=image,
            seconds=clock.laps,
        )  # fmt: skip


def check_vector(
    store: VectorStore, collection: str, vector: str | None, spec: EmbedderSpec | None = None
) -> str:
    names = store.vector_sizes(collection)
    if vector is None:
        return default_vector(store, collection, spec)
    if vector not in names:
        raise ValueError(
            f"collection {collection!r} has no vector {vector!r} (it has: {', '.join(names)})"
        )
    embedders = (AUTOENCODER, COLOUR_VECTOR, TUNED_VECTOR)
    if spec is not None and vector not in (spec.vector_name, *embedders):
        raise ValueError(
            f"no photo embedder for vector {vector!r}; use --vector {spec.vector_name}, "
            f"{', '.join(embedders)}"
        )
    return vector


def search_by_id(
    store: VectorStore,
    collection: str,
    product_id: int,
    top: int = 5,
    vector: str | None = None,
    where: Where | None = None,
    same_type: bool = False,
    blend: Blend | None = None,
) -> SearchResult:
    """Search with a stored product's own vector (no model needed)."""
    vector = check_vector(store, collection, vector)
    found = store.retrieve(collection, [product_id], with_vectors=True)
    if not found:
        raise ProductNotFound(f"product {product_id} is not in collection {collection!r}")
    payload = found[0].payload or {}
    where = list(where or [])
    if same_type:
        if payload.get(SAME_TYPE_FIELD) is None:
            raise ValueError(
                f"product {product_id} has no predicted articleType: run `searchctl tag`"
            )
        where.append((SAME_TYPE_FIELD, payload[SAME_TYPE_FIELD]))
    query = found[0].vectors[vector]
    if blend is None:
        hits = store.search(collection, query, vector, top, where)
        return SearchResult(f"id:{product_id}", vector, hits, payload, where=where)
    hits, _ = store.run(
        blended_search, collection, query, vector, found[0].vectors, payload, blend, top, where
    )
    return SearchResult(f"id:{product_id}", vector, hits, payload, where=where, blend=blend)


@dataclass
class SearchRequest:
    """One search: a photo (`image`, a path or a file object) or a catalog `product_id`, and
    how to rank. Unset weights are the collection's default search (default_blend); a weight
    given applies to every photo, a cut-out one's too."""

    image: object | None = None
    product_id: int | None = None
    top: int = 5
    vector: str | None = None
    where: list[tuple[str, object]] = field(default_factory=list)  # parse_where
    same_type: bool = False
    plain: bool = False  # plain cosine on the vector: no re-rank
    colour_weight: float | None = None
    tag_weight: float | None = None
    tuned_weight: float | None = None
    candidates: int | None = None
    cutout: bool = True  # make a photo that is not a studio shot look like one first
    offset: int = 0  # hits skipped (paging): top hits from the offset-th
    text: str | None = None  # words of the product name: alone ranks by them, else narrows
    dedupe: bool = False  # one hit per group of duplicate photos (searchctl.duplicates)

    def __post_init__(self) -> None:
        if self.top < 1 or self.offset < 0:
            raise ValueError(f"top must be 1 or more, offset 0 or more: {self.top}, {self.offset}")
        if self.image is not None and self.product_id is not None:
            raise ValueError("give either an IMAGE or --id PRODUCT_ID, not both")
        if self.image is None and self.product_id is None and not (self.text or "").strip():
            raise ValueError("give an IMAGE, --id PRODUCT_ID or --text WORDS")
        if self.product_id is not None and not 0 <= self.product_id < 2**63:
            raise ValueError(f"--id {self.product_id}: product ids are whole numbers from 0")

    @property
    def wants_tags(self) -> bool:
        """The photo's predicted tags are needed whatever the collection has."""
        return self.same_type or bool(self.tag_weight)


def ensure_text_index(store: VectorStore, collection: str) -> None:
    """The full-text index of product names, for collections ingested before it existed (a
    new one gets it at ingest); called where a collection is opened for searching, not on
    every query. A read-only collection keeps what it has."""
    with contextlib.suppress(ReadOnlyCollection):
        store.create_index(collection, TEXT_FIELD, TEXT_INDEX)


def check_where(store: VectorStore, collection: str, where: Where) -> None:
    """A filter on a field no product has would answer nothing: an error naming the fields."""
    if not where:
        return
    sample = store.sample(collection, 50)
    fields = sorted({key for p in sample for key in (p.payload or {})})
    for key, _ in where:
        if key not in fields:
            raise ValueError(
                f"--where {key}: collection {collection!r} has no field {key!r}; its fields: "
                + ", ".join(fields)
            )


def request_blend(store: VectorStore, collection: str, request: SearchRequest) -> Blend | None:
    """The re-rank a request asks for: the collection's default search, with the weights it
    sets; None for --plain."""
    names = store.vector_sizes(collection)
    if request.colour_weight and COLOUR_VECTOR not in names:
        raise ValueError(
            f"collection {collection!r} has no colour vectors for --colour-weight: run "
            "`searchctl ingest` on its catalog to add them"
        )
    if request.tuned_weight and TUNED_VECTOR not in names:
        raise ValueError(
            f"collection {collection!r} has no tuned vectors for --tuned-weight: they come "
            "with a finetune classifier (`searchctl train classifier --kind finetune`)"
        )
    if request.plain:
        return None
    blend = default_blend(store, collection, request.vector)
    overrides = {
        "colour_weight": request.colour_weight,
        "tag_weight": request.tag_weight,
        "tuned_weight": request.tuned_weight,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if request.tuned_weight is not None:
        overrides["tuned_candidates"] = TUNED_BLEND.tuned_candidates
    if overrides:
        blend = (blend or Blend(0.0, 0.0)).with_weights(**overrides)
        if request.tag_weight == 0.0:  # no tags asked for: no type vote either
            blend = blend.without_tags()
    if blend is not None and request.candidates is not None:
        blend = replace(blend, candidates=request.candidates)
    return blend


NO_CLASSIFIER_NOTE = "No classifier here: no re-rank by predicted tags."
STALE_CUTOUT_NOTE = (
    "This collection's photos on a background were cut out by an older searchctl than this "
    "photo was: run `searchctl ingest` on its catalog to cut them out again."
)


def open_searcher(
    store: VectorStore,
    collection: str,
    *,
    with_tags: bool,
    tags_required: bool = False,
    **options,
) -> tuple[Searcher, str | None]:
    """A Searcher with the classifier where the collection has one; without one, a Searcher
    without tags and a note saying so (an error if `tags_required`). `options` are
    Searcher's."""
    from classifier.tagger import ClassifierMissing

    if not with_tags:
        return Searcher(store, collection, **options), None
    try:
        return Searcher(store, collection, with_tags=True, **options), None
    except ClassifierMissing:
        if tags_required:
            from classifier.train import has_classifier, missing_classifier

            data_dir = options.get("data_dir") or default_data_dir()
            if not has_classifier(data_dir, collection):
                raise missing_classifier(store, collection, "--same-type or --tag-weight") from None
            raise
        return Searcher(store, collection, **options), NO_CLASSIFIER_NOTE


def search(
    store: VectorStore,
    collection: str,
    request: SearchRequest,
    *,
    searcher: Searcher | None = None,
    weights: Path | None = None,
    data_dir: Path | None = None,
    fetch: dict | None = None,
) -> SearchResult:
    """The one search call: by photo (a file, bytes, or an http(s) URL, fetched with
    `fetch`'s options of embedder.images.fetch_image) through `searcher` (a
    warm one, or one made for this query), or by a stored product's vector."""
    check_where(store, collection, request.where)
    wanted = request.top + request.offset
    # With --dedupe, more hits are fetched: the duplicates dropped leave enough.
    limit = wanted * DEDUPE_FETCH + DEDUPE_FETCH_EXTRA if request.dedupe else wanted

    def page(hits: list[Hit]) -> list[Hit]:
        if request.dedupe:
            backbone = default_vector(store, collection)
            hits = collapse_duplicates(store, collection, hits, backbone)[:wanted]
        return hits[request.offset :]

    if request.text:
        words = (TEXT_FIELD, Words(request.text))
        if request.image is None and request.product_id is None:
            hits = store.text_search(collection, TEXT_FIELD, request.text, limit, request.where)
            return SearchResult(f"text:{request.text}", "text", page(hits),
                                where=[*request.where, words])  # fmt: skip
        request = replace(request, where=[*request.where, words])
    blend = request_blend(store, collection, request)
    if request.product_id is not None:
        result = search_by_id(
            store, collection, request.product_id, limit, request.vector, request.where,
            request.same_type, blend,
        )  # fmt: skip
        result.hits = page(result.hits)
        return result
    note, image, fetch = None, request.image, fetch or {}
    started = time.perf_counter()
    if is_url(image):
        image = fetch_image(image, **fetch)  # its errors name the URL
    try:  # decoded once, before any model is loaded: a bad photo is a clear error at once
        image = open_image(image)
    except BadImage as exc:
        raise BadImage(f"{request.image}: {exc}" if is_url(request.image) else str(exc)) from None
    decoded = time.perf_counter() - started
    if searcher is None:
        searcher, note = open_searcher(
            store, collection, with_tags=request.wants_tags or bool(blend and blend.tag_weight),
            tags_required=request.wants_tags, weights=weights, compiled=False,
            data_dir=data_dir, cutout=request.cutout,
        )  # fmt: skip
    elif request.wants_tags and searcher.tagger is None:
        from classifier.tagger import ClassifierMissing

        raise ClassifierMissing(f"collection {collection!r} has no classifier for its tags")
    if searcher.tagger is None and blend is not None and blend.tag_weight:
        note = NO_CLASSIFIER_NOTE
        blend = blend.without_tags()
    result = searcher.search_image(
        image, limit, request.vector, request.where, request.same_type, blend, request.cutout
    )
    result.hits = page(result.hits)
    result.seconds["decode"] = result.seconds.get("decode", 0.0) + decoded
    result.query = str(request.image) if not isinstance(request.image, bytes) else "photo"
    result.notes += [note] if note else []
    result.notes += [STALE_CUTOUT_NOTE] if searcher.stale_cutout else []
    return result


def recommend(
    store: VectorStore,
    collection: str,
    positive: list[int],
    negative: list[int] | None = None,
    top: int = 10,
    where: Where | None = None,
    vector: str | None = None,
    offset: int = 0,
) -> SearchResult:
    """More like the `positive` products, less like the `negative` ones: the mean of the
    positives' stored vectors minus half the mean of the negatives', searched, with the
    products given left out of the hits."""
    negative = list(negative or [])
    if not positive:
        raise ValueError("recommend needs at least one positive product id")
    vector = check_vector(store, collection, vector)
    check_where(store, collection, where or [])
    wanted = [*positive, *negative]
    found = {p.id: p for p in store.retrieve(collection, wanted, with_vectors=[vector])}
    missing = [pid for pid in wanted if pid not in found]
    if missing:
        raise ProductNotFound(f"product {missing[0]} is not in collection {collection!r}")
    query = unit_rows(np.stack([found[i].vectors[vector] for i in positive])).mean(axis=0)
    if negative:
        away = unit_rows(np.stack([found[i].vectors[vector] for i in negative])).mean(axis=0)
        query = query - 0.5 * away
    given = set(wanted)
    hits = store.search(collection, query, vector, top + offset + len(given), list(where or []))
    hits = [h for h in hits if h.id not in given][offset : offset + top]
    label = "+" + ",".join(map(str, positive)) + "".join(f" -{i}" for i in negative)
    return SearchResult(f"recommend:{label}", vector, hits, where=list(where or []))


class ProductNotFound(StoreError):
    """A product id the collection does not hold."""


def label_counts(store: VectorStore, collection: str, fields: tuple[str, ...]) -> dict:
    """field -> {label: products}, most common first: the facets of a search page."""
    counts: dict[str, dict[str, int]] = {f: {} for f in fields}
    for point in store.iter_points(collection):
        payload = point.payload or {}
        for f in fields:
            value = payload.get(f)
            if value is not None:
                counts[f][value] = counts[f].get(value, 0) + 1
    return {f: dict(sorted(c.items(), key=lambda kv: -kv[1])) for f, c in counts.items()}
