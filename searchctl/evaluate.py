"""Label match rates of the top-k hits: how often do hits share the query's labels?

Leave-one-out over a collection: every product (or a seeded sample) queries with its own stored
vector and is left out of its hits. External queries (`--queries DIR`, a catalog of photos that
are not points) are embedded with the collection's embedder and also report whether the same
product id came back. Searches go through the store in batches, like the product's queries do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classifier.schemes import TUNED_VECTOR
from embedder.colour import COLOUR_VECTOR
from qdrant.base import Hit, VectorStore
from searchctl.config import default_data_dir
from searchctl.query import (
    SAME_TYPE_FIELD,
    Blend,
    add_candidates,
    best_cosines,
    default_blend,
    rerank,
)
from searchctl.reporting import NO_PROGRESS, Progress

EVAL_FIELDS = (
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "usage",
    "season",
)
MACRO_FIELD = "articleType"
SEARCH_CHUNK = 256  # queries per store call
RECALL_CHECK_QUERIES = 500
TAGGER_INPUT = "(classifier photo)"  # a key of the decode sizes beside the vector names


@dataclass(frozen=True)
class SearchMode:
    """One way the tool searches: a named vector, optionally keeping only hits whose
    `same_field` equals the query's (e.g. the predicted articleType: --same-type), optionally
    re-ranked by colour and predicted type (`blend`: the default search of `searchctl query`)."""

    name: str
    vector: str
    same_field: str | None = None
    blend: Blend | None = None

    @property
    def vectors(self) -> tuple[str, ...]:
        """The named vectors a query needs in this mode."""
        return (self.vector, *self.blend.side_vectors()) if self.blend else (self.vector,)

    def row_where(self, queries: QuerySet) -> list | None:
        if self.same_field is None:
            return None
        return [
            [(self.same_field, q[self.same_field])] if q.get(self.same_field) else None
            for q in queries.labels
        ]


@dataclass
class QuerySet:
    """Query vectors (one array per named vector) with the labels they are judged against."""

    ids: list[int]
    labels: list[dict]
    vectors: dict[str, np.ndarray]
    leave_one_out: bool  # the queries are points of the collection: drop each from its hits
    images: list[Path | None] = field(default_factory=list)  # for contact sheets
    # name -> query index -> rows the re-rank takes the best cosine of, in place of the
    # query's vector: a cut-out photo's colour under other white balances (Searcher.colour_rows)
    variants: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)

    def cut_out(self, q: int) -> bool:
        """Query `q` is a photo that was cut out of its background (it has colour variants;
        a blend without colour does not need to know)."""
        return q in self.variants.get(COLOUR_VECTOR, {})


@dataclass
class ModeResult:
    mode: SearchMode
    agreement: dict[str, float | None]
    agreement_macro: float | None
    same_product_recall: float | None
    per_class: dict[str, dict]  # articleType -> {"queries": n, "agreement": {field: rate}}
    query_scores: np.ndarray  # per query: mean agreement over the fields it has labels for
    hits: list[list[int]]

    def to_json(self) -> dict:
        return {
            "vector": self.mode.vector,
            "agreement": _rounded(self.agreement),
            f"agreement_macro_{MACRO_FIELD}": _round(self.agreement_macro),
            "same_product_recall": _round(self.same_product_recall),
            f"per_{MACRO_FIELD}": {
                c: {"queries": v["queries"], "agreement": _rounded(v["agreement"])}
                for c, v in self.per_class.items()
            },
        }


@dataclass
class EvalReport:
    collection: str
    k: int
    queries: QuerySet
    exact: bool
    results: list[ModeResult] = field(default_factory=list)
    recall_vs_exact: dict[str, float] = field(default_factory=dict)  # HNSW only, per vector
    seconds: dict[str, float] = field(default_factory=dict)
    sample: int | None = None
    seed: int | None = None
    source: str = "collection"  # or the --queries directory
    skipped: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a person should know of the run
    labels_of: dict[int, dict] = field(default_factory=dict, repr=False)  # id -> its labels

    @property
    def search_description(self) -> str:
        if self.exact:
            return "exact search (full scan)"
        checks = ", ".join(f"{v} {r:.4f}" for v, r in self.recall_vs_exact.items())
        return (
            f"HNSW search (the store's default); recall@{self.k} against exact search on "
            f"{min(RECALL_CHECK_QUERIES, len(self.queries.ids))} queries: {checks}"
        )

    def to_json(self) -> dict:
        return {
            "k": self.k,
            "queries": len(self.queries.ids),
            "collection": self.collection,
            "source": self.source,
            "sample": self.sample,
            "seed": self.seed,
            "search": "exact" if self.exact else "hnsw",
            "recall_vs_exact": {k: round(v, 4) for k, v in self.recall_vs_exact.items()},
            "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "results": {r.mode.name: r.to_json() for r in self.results},
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _rounded(d: dict) -> dict:
    return {k: _round(v) for k, v in d.items()}


# -- what to evaluate ----------------------------------------------------------------------------
def available_modes(store: VectorStore, collection: str) -> list[SearchMode]:
    """Every search mode the collection supports: plain search on each named vector,
    --same-type on each when the products carry predicted tags, and the default blend on each
    shape vector."""
    vectors = list(store.vector_sizes(collection))
    modes = [SearchMode(v, v) for v in vectors]
    some = store.sample(collection, 1)
    if some and (some[0].payload or {}).get(SAME_TYPE_FIELD) is not None:
        modes += [SearchMode(f"{v}+same-type", v, SAME_TYPE_FIELD) for v in vectors]
    for v in vectors:
        blend = default_blend(store, collection, v) if v != COLOUR_VECTOR else None
        if blend is not None:
            modes.append(SearchMode(f"{v}+blend", v, blend=blend))
    return modes


def photo_modes(
    store: VectorStore, collection: str, modes: list[SearchMode]
) -> tuple[list[SearchMode], list[str]]:
    """The modes that photo queries can run, and the names of those left out: the tuned
    vectors of a collection whose classifier did not make them all (retrained as another
    kind, or their stage unfinished) cannot be matched by a photo's."""
    from classifier.tuned import tuned_current

    if tuned_current(store, collection):
        return modes, []
    kept = [m for m in modes if TUNED_VECTOR not in m.vectors]
    return kept, [m.name for m in modes if m not in kept]


def select_modes(modes: list[SearchMode], names: Sequence[str] | None) -> list[SearchMode]:
    if not names:
        return modes
    known = {m.name: m for m in modes}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"no search mode {', '.join(map(repr, unknown))} here (modes: {', '.join(known)})"
        )
    return [known[n] for n in names]


def collection_labels(store: VectorStore, collection: str, ids: Sequence[int]) -> dict[int, dict]:
    """id -> payload (labels and image path) for the given points, fetched in pages."""
    return {p.id: p.payload or {} for p in store.iter_points(collection, ids)}


def sample_ids(ids: Sequence[int], sample: int | None, seed: int) -> list[int]:
    """All ids sorted, or a seeded random sample of them (sorted): same seed, same queries."""
    ordered = sorted(ids)
    if sample is None or sample >= len(ordered):
        return ordered
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(ordered, size=sample, replace=False))


def stored_queries(
    store: VectorStore, collection: str, ids: Sequence[int], vectors: Sequence[str]
) -> QuerySet:
    """Leave-one-out queries: the points' own stored vectors and labels."""
    root = store.get_metadata(collection).get("catalog")
    found_ids, labels, rows = [], [], {v: [] for v in vectors}
    for p in store.iter_points(collection, ids, with_vectors=True):
        found_ids.append(p.id)
        labels.append(p.payload or {})
        for v in vectors:
            rows[v].append(p.vectors[v])
    arrays = {
        v: np.asarray(r, dtype=np.float32).reshape(len(found_ids), -1) for v, r in rows.items()
    }
    images = [Path(root) / p["image"] if root and p.get("image") else None for p in labels]
    return QuerySet(found_ids, labels, arrays, leave_one_out=True, images=images)


# -- searching -----------------------------------------------------------------------------------
def search_hits(
    store: VectorStore,
    collection: str,
    vector: str,
    queries: np.ndarray,
    limit: int,
    exact: bool = False,
    workers: int = 2,
    progress: Progress = NO_PROGRESS,
    row_where: list | None = None,
) -> list[list[Hit]]:
    """Hits (id, score) for every query row, in batches over `workers` threads (the store
    releases the GIL while it searches)."""
    starts = range(0, len(queries), SEARCH_CHUNK)

    def run(start: int) -> list[list[Hit]]:
        chunk = queries[start : start + SEARCH_CHUNK]
        wheres = row_where[start : start + SEARCH_CHUNK] if row_where is not None else None
        found = store.search_batch(
            collection, chunk, vector, limit, exact=exact, with_payload=False, row_where=wheres
        )
        progress.advance(len(chunk))
        return found

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [hits for part in pool.map(run, starts) for hits in part]


def collection_vectors(store: VectorStore, collection: str, vector: str) -> dict[int, np.ndarray]:
    """id -> one named vector of every point that has it."""
    return {
        p.id: p.vectors[vector]
        for p in store.iter_points(collection, with_vectors=[vector])
        if p.vectors and vector in p.vectors
    }


def blend_ids(
    hits: list[list[Hit]],
    queries: QuerySet,
    blend: Blend,
    vectors_of: dict[str, dict[int, np.ndarray]],
    labels_of: dict[int, dict],
) -> list[list[int]]:
    """Re-rank each query's candidates as `searchctl query` does (Blend), all of them kept
    (`vectors_of`: the blend's side vectors of the collection, name -> id -> vector)."""
    side = [v for v in blend.side_vectors() if v in queries.vectors]
    ranked = []
    for q, candidates in enumerate(hits):
        query_blend = blend.for_photo(queries.cut_out(q))
        side_scores = {
            v: best_cosines(
                queries.variants.get(v, {}).get(q, queries.vectors[v][q]),
                {h.id: vectors_of[v][h.id] for h in candidates if h.id in vectors_of[v]},
            )
            for v in side
        }
        reranked = rerank(candidates, side_scores, queries.labels[q], labels_of, query_blend)
        ranked.append([h.id for h in reranked])
    return ranked


def top_k(hits: list[list[int]], query_ids: Sequence[int], k: int, leave_one_out: bool):
    """The first k hits of each query, without the query itself when it is a point.

    A query's own point is not always first (byte-identical photos of other products tie with
    it), so it is removed wherever it is; if it is not among the k+1 hits, the first k are kept.
    """
    if not leave_one_out:
        return [h[:k] for h in hits]
    return [[i for i in h if i != q][:k] for h, q in zip(hits, query_ids)]


def hnsw_recall(
    store: VectorStore, collection: str, vector: str, queries: np.ndarray, k: int, workers: int
) -> float:
    """Mean overlap of HNSW top-k with exact top-k, on the first queries of the set."""
    sample = queries[:RECALL_CHECK_QUERIES]
    runs = [
        [
            {h.id for h in hits}
            for hits in search_hits(store, collection, vector, sample, k, e, workers)
        ]
        for e in (False, True)
    ]
    return float(np.mean([len(a & e) / max(1, len(e)) for a, e in zip(*runs)]))


# -- scoring -------------------------------------------------------------------------------------
def agreement_matrix(
    query_labels: Sequence[dict],
    hits: Sequence[Sequence[int]],
    labels_of: dict[int, dict],
    fields: Sequence[str] = EVAL_FIELDS,
) -> np.ndarray:
    """[queries x fields]: fraction of a query's hits whose label equals the query's; NaN where
    the query has no label for the field (or no hits). Hits without the label count as misses."""
    out = np.full((len(query_labels), len(fields)), np.nan)
    for q, (labels, hit_ids) in enumerate(zip(query_labels, hits)):
        if not hit_ids:
            continue
        hit_labels = [labels_of.get(h, {}) for h in hit_ids]
        for f, name in enumerate(fields):
            want = labels.get(name)
            if want is not None:
                out[q, f] = sum(h.get(name) == want for h in hit_labels) / len(hit_ids)
    return out


def _nanmean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def score_mode(
    mode: SearchMode,
    queries: QuerySet,
    hits: list[list[int]],
    labels_of: dict[int, dict],
    collection_ids: set[int] | None = None,
) -> ModeResult:
    matrix = agreement_matrix(queries.labels, hits, labels_of)
    agreement = {f: _nanmean(matrix[:, i]) for i, f in enumerate(EVAL_FIELDS)}
    classes: dict[str, list[int]] = {}
    for q, labels in enumerate(queries.labels):
        if labels.get(MACRO_FIELD) is not None:
            classes.setdefault(labels[MACRO_FIELD], []).append(q)
    per_class = {
        c: {
            "queries": len(rows),
            "agreement": {f: _nanmean(matrix[rows, i]) for i, f in enumerate(EVAL_FIELDS)},
        }
        for c, rows in classes.items()
    }
    class_means = [v["agreement"][MACRO_FIELD] for v in per_class.values()]
    per_class = dict(
        sorted(per_class.items(), key=lambda kv: (kv[1]["agreement"][MACRO_FIELD], kv[0]))
    )
    recall = None
    if not queries.leave_one_out and collection_ids is not None:
        known = [q for q, i in enumerate(queries.ids) if i in collection_ids]
        if known:
            recall = float(np.mean([queries.ids[q] in hits[q] for q in known]))
    counts = (~np.isnan(matrix)).sum(axis=1)
    query_scores = np.where(counts > 0, np.nansum(matrix, axis=1) / np.maximum(counts, 1), np.nan)
    return ModeResult(
        mode,
        agreement,
        float(np.mean(class_means)) if class_means else None,
        recall,
        per_class,
        query_scores,
        hits,
    )


def evaluate(
    store: VectorStore,
    collection: str,
    queries: QuerySet,
    modes: Sequence[SearchMode],
    k: int = 5,
    exact: bool = False,
    workers: int = 2,
    labels_of: dict[int, dict] | None = None,
    progress: Progress = NO_PROGRESS,
) -> EvalReport:
    """Search every query in every mode and score the top-k hits against the query's labels."""
    report = EvalReport(collection, k, queries, exact)
    started = time.perf_counter()
    collection_ids = store.ids(collection)
    if labels_of is None:
        labels_of = collection_labels(store, collection, sorted(collection_ids))
    report.seconds["labels"] = time.perf_counter() - started
    extra = 1 if queries.leave_one_out else 0
    vectors_of: dict[str, dict[int, np.ndarray]] = {}
    for mode in modes:
        progress.phase(mode.name, len(queries.ids))
        t0 = time.perf_counter()
        found = search_hits(
            store,
            collection,
            mode.vector,
            queries.vectors[mode.vector],
            max(k, mode.blend.candidates) + extra if mode.blend else k + extra,
            exact,
            workers,
            progress,
            mode.row_where(queries),
        )
        if mode.blend:
            for v in mode.blend.side_vectors():
                if v not in vectors_of:
                    vectors_of[v] = collection_vectors(store, collection, v)
            tuned_search = mode.blend.tuned_search if mode.vector != TUNED_VECTOR else 0
            if tuned_search and TUNED_VECTOR in queries.vectors:
                tuned = search_hits(
                    store,
                    collection,
                    TUNED_VECTOR,
                    queries.vectors[TUNED_VECTOR],
                    tuned_search + extra,
                    exact,
                    workers,
                    row_where=mode.row_where(queries),
                )
                if mode.vector not in vectors_of:
                    vectors_of[mode.vector] = collection_vectors(store, collection, mode.vector)
                shape_of = vectors_of[mode.vector]
                found = [
                    add_candidates(
                        hits,
                        more,
                        best_cosines(
                            queries.vectors[mode.vector][q],
                            {h.id: shape_of[h.id] for h in more if h.id in shape_of},
                        ),
                    )  # fmt: skip
                    for q, (hits, more) in enumerate(zip(found, tuned))
                ]
            raw = blend_ids(found, queries, mode.blend, vectors_of, labels_of)
        else:
            raw = [[h.id for h in hits] for hits in found]
        hits = top_k(raw, queries.ids, k, queries.leave_one_out)
        report.results.append(score_mode(mode, queries, hits, labels_of, collection_ids))
        report.seconds[f"search {mode.name}"] = time.perf_counter() - t0
    if not exact:
        t0 = time.perf_counter()
        for vector in dict.fromkeys(m.vector for m in modes):
            report.recall_vs_exact[vector] = hnsw_recall(
                store, collection, vector, queries.vectors[vector], k, workers
            )
        report.seconds["recall check"] = time.perf_counter() - t0
    report.seconds["total"] = time.perf_counter() - started
    return report


def photo_queries(
    catalog,
    searcher,
    vectors: Sequence[str],
    batch_size: int = 64,
    progress: Progress = NO_PROGRESS,
) -> tuple[QuerySet, list[tuple[int, str]]]:
    """External queries: embed a catalog's photos with the collection's embedders (and predict
    their tags when the searcher has the classifier).

    Returns the queries and the (id, reason) of photos that could not be used.
    """
    from embedder.images import BadImage, fit_image, was_cut_out
    from searchctl.query import check_vector

    for v in vectors:
        check_vector(searcher.store, searcher.collection, v, searcher.spec)
    backbone = searcher.spec.vector_name
    sizes = {v: searcher.input_size(v) for v in dict.fromkeys([*vectors, backbone])}
    tagger_size = searcher.input_size(TUNED_VECTOR) if searcher.tags_from_photo else None
    if tagger_size:
        sizes[TAGGER_INPUT] = tagger_size
    ids, labels, images, skipped = [], [], [], []
    rows: dict[str, list[np.ndarray]] = {v: [] for v in vectors}
    colour_variants: dict[int, np.ndarray] = {}
    products = [p for p in catalog.products if p.image is not None]
    progress.phase("query photos", len(products))
    skipped += [(p.id, "no image file") for p in catalog.products if p.image is None]
    for start in range(0, len(products), batch_size):
        pixels = {size: [] for size in set(sizes.values())}
        batch, photos = [], []
        for product in products[start : start + batch_size]:
            try:
                photo = searcher.prepare(product.image)
                decoded = {size: fit_image(photo, *size) for size in pixels}
            except BadImage as exc:
                skipped.append((product.id, str(exc)))
                continue
            for size, arr in decoded.items():
                pixels[size].append(arr)
            batch.append(product)
            photos.append(photo)
        if batch:
            stacked = {size: np.stack(arrs) for size, arrs in pixels.items()}
            views = [was_cut_out(p) for p in photos]  # pooled with test-time views, as a query
            tags = [{} for _ in batch]
            features = stacked[tagger_size] if tagger_size else None
            one_pass = None  # the finetune network's (probabilities, tuned vectors)
            backbone_vecs = None
            for v in vectors:
                if v == backbone:
                    vecs, from_vectors = searcher.embed_pixels(stacked[sizes[v]], views)
                    features = features if tagger_size else from_vectors
                    backbone_vecs = vecs
                elif v == TUNED_VECTOR and tagger_size:
                    one_pass = searcher.tagger.predict_and_embed(stacked[sizes[v]])
                    vecs = one_pass[1]
                else:
                    vecs = searcher.embed_batch(stacked[sizes[v]], v)
                rows[v].append(searcher.search_rows(vecs, v, views))
            if one_pass is None and tagger_size:  # the type tagger may read the tuned vectors
                one_pass = searcher.tagger.predict_and_embed(stacked[tagger_size])
            if one_pass is not None:  # tags and tuned vectors from one pass, as a query's
                tags = searcher.photo_tags(*one_pass)
            elif searcher.tagger is not None:
                if features is None:
                    features = searcher.embed_pixels(stacked[sizes[backbone]], views)[1]
                tags = searcher.predict_tags(features)
            if searcher.label_taggers:  # as a query photo's (Searcher.label_tags)
                if backbone_vecs is None:
                    backbone_vecs = searcher.embed_pixels(stacked[sizes[backbone]], views)[0]
                known = {backbone: backbone_vecs}
                if one_pass is not None:
                    known[TUNED_VECTOR] = one_pass[1]
                labelled = searcher.label_tags(photos, known)
                tags = [{**t, **mine} for t, mine in zip(tags, labelled)]
            if COLOUR_VECTOR in vectors:  # as a query photo's colour is (Searcher.colour_rows)
                for j, photo in enumerate(photos):
                    if was_cut_out(photo):
                        colour_variants[len(ids) + j] = searcher.colour_rows(photo)
            ids += [p.id for p in batch]
            labels += [{**p.payload, **t} for p, t in zip(batch, tags)]
            images += [p.image for p in batch]
        progress.advance(len(products[start : start + batch_size]))
    matrices = {
        v: np.concatenate(r) if r else np.zeros((0, 1), np.float32) for v, r in rows.items()
    }
    variants = {COLOUR_VECTOR: colour_variants} if colour_variants else {}
    return QuerySet(ids, labels, matrices, False, images, variants), skipped


@dataclass
class EvalRequest:
    """One evaluation, as `searchctl eval` asks for it: leave-one-out on the collection's own
    points (the classifier's held-out test products with `held_out`), or external photos in
    the catalog layout (`queries`)."""

    top: int = 5
    sample: int | None = None
    seed: int = 0
    modes: list[str] | None = None  # default: every mode the collection has
    queries: Path | None = None
    held_out: bool = False
    exact: bool = False
    workers: int = 2
    batch_size: int = 64
    cutout: bool = True

    def __post_init__(self) -> None:
        if self.held_out and self.queries is not None:
            raise ValueError("--held-out picks queries from the collection, not --queries")


def held_out_ids(
    store: VectorStore, data_dir: Path, collection: str, ids: Sequence[int]
) -> list[int]:
    """The classifier's test products among `ids`."""
    from classifier.tagger import read_record, tagger_dir
    from classifier.train import missing_classifier

    record = read_record(tagger_dir(data_dir, collection))
    if record is None:
        raise missing_classifier(store, collection, "--held-out")
    return sorted(set(record.test_ids) & set(ids))


def run_eval(
    store: VectorStore,
    collection: str,
    request: EvalRequest,
    *,
    data_dir: Path | None = None,
    weights: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> EvalReport:
    """Assemble the queries a request asks for, search them in every mode, score the hits."""
    data_dir = data_dir or default_data_dir()
    modes = select_modes(available_modes(store, collection), request.modes)
    notes = []
    if request.queries is not None and not request.modes:
        modes, left_out = photo_modes(store, collection, modes)
        if left_out:
            notes.append(
                f"Left out: {', '.join(left_out)}; the tuned vectors are not all the "
                "classifier's (see `searchctl tag`)."
            )
    vectors = list(dict.fromkeys(v for m in modes for v in m.vectors))
    all_ids = sorted(store.ids(collection))
    if not all_ids:
        raise ValueError(f"collection {collection!r} is empty: run `searchctl ingest` first")
    labels_of = collection_labels(store, collection, all_ids)
    skipped: list[tuple[int, str]] = []
    if request.queries is None:
        ids = held_out_ids(store, data_dir, collection, all_ids) if request.held_out else all_ids
        picked = sample_ids(ids, request.sample, request.seed)
        query_set = stored_queries(store, collection, picked, vectors)
        source = "the classifier's held-out products" if request.held_out else "the collection"
    else:
        from ingest.catalog import read_catalog
        from searchctl.query import Searcher

        external = read_catalog(request.queries)
        if request.sample is not None:
            all_external = [p.id for p in external.products]
            chosen = set(sample_ids(all_external, request.sample, request.seed))
            external.products = [p for p in external.products if p.id in chosen]
        needs_tags = any(m.same_field or (m.blend and m.blend.tag_weight) for m in modes)
        searcher = Searcher(
            store, collection, weights, data_dir=data_dir, with_tags=needs_tags,
            cutout=request.cutout,
        )  # fmt: skip
        query_set, skipped = photo_queries(
            external, searcher, vectors, request.batch_size, progress=progress
        )
        source = str(external.root)
        if not query_set.ids:
            raise ValueError(f"no usable query photos in {external.root}")
    report = evaluate(
        store, collection, query_set, modes, k=request.top, exact=request.exact,
        workers=request.workers, labels_of=labels_of, progress=progress,
    )  # fmt: skip
    report.sample, report.source, report.skipped = request.sample, source, skipped
    report.seed = request.seed if request.sample else None
    report.notes, report.labels_of = notes, labels_of
    return report
