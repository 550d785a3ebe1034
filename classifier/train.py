"""Train the tagger on a collection, write its predictions into the payloads, re-tag later.

Data flow: store (ids, labels, image paths or vectors) -> features -> split -> train ->
test metrics -> saved tagger -> pred_* payload fields (keyword-indexed for filtering).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classifier.neighbours import VOTE_PENDING_KEY, VOTED_FIELD, vote_among
from classifier.schemes import (
    DEFAULT_MIN_CLASS_SIZE,
    IGNORE,
    SCHEMES,
    TUNED_VECTOR,
    SchemeClasses,
    check_kind,
    pred_field,
    tag_payload,
    training_advice,
)
from classifier.split import stratified_split
from classifier.tagger import (
    PREDICT_BATCH,
    RECORD_FILE,
    ClassifierMissing,
    Tagger,
    TaggerRecord,
    predict_probs,
    read_record,
    save_tagger,
    tagger_dir,
)
from classifier.tuned import tuned_current
from embedder.collection import NO_IMAGE, catalog_root, collection_cutout
from embedder.decoded import DecodedPhotos, PhotoRows, RowFile, decoded_dir
from embedder.files import write_json_atomic
from embedder.spec import EmbedderSpec
from qdrant.base import KEYWORD_INDEX, VectorStore, unit_rows
from searchctl.config import default_data_dir
from searchctl.reporting import (
    NO_PROGRESS,
    Action,
    Progress,
    StageReport,
    TooLittleData,
    skipped,
)

DEFAULT_KIND = "vectors"
# finetune: 12 epochs of a cosine-decayed rate, about 6.6-6.9 minutes each for 44k photos here.
# 8 rather than 4 gave +0.8 / +0.1 / +0.2 points of voted test accuracy; 12 rather than 8 gave
# the network +0.6 / +0.2 / +0.6 and the vote -0.2 / +0.1 / +0.4, and each step lifted the
# default search's leave-one-out, held-out and phone-like figures but baseColour
# (docs/classifier.md), at 50 % more training time.
DEFAULT_EPOCHS = {"finetune": 12, "vectors": 12}
PATIENCE = 3
BATCH = {"finetune": 64, "vectors": 128}
LEARNING_RATE = {"finetune": 3e-4, "vectors": 3e-4}
# What training reads of a product's payload (scheme labels; articleType also stratifies).
LABEL_FIELDS = ("gender", "masterCategory", "subCategory", "articleType")


@dataclass
class Features:
    ids: list[int]
    payloads: list[dict]
    matrix: np.ndarray | RowFile | PhotoRows  # vectors or photos, one row a product
    skipped: list[tuple[int, str]] = field(default_factory=list)
    photos: DecodedPhotos | None = None  # decoded for these features alone: closed with them

    def close(self) -> None:
        """Remove what was kept on disk for these features alone (collection_features)."""
        if isinstance(self.matrix, RowFile):
            self.matrix.close()
        if self.photos is not None:
            self.photos.close()


def collection_payloads(
    store: VectorStore,
    collection: str,
    ids: Sequence[int] | None = None,
    vector: str | None = None,
    *,
    scratch: Path | None = None,
    fields: Sequence[str] | None = None,
) -> tuple[list[int], list[dict], np.ndarray | RowFile | None]:
    """ids, payloads (and the named vector, if asked) of the collection's points, in id order.
    The vectors are written into one matrix as they come; with `scratch`, a RowFile on disk
    in that directory (memory then follows a batch of rows, not the catalog; the caller
    closes it). `fields`: only these payload fields are kept."""
    out_ids, payloads = [], []
    rows = len(ids) if ids is not None else store.count(collection)
    matrix = None
    if vector:
        dim = store.vector_sizes(collection)[vector]
        matrix = (
            RowFile((dim,), np.float32, directory=scratch)
            if scratch is not None
            else np.empty((rows, dim), np.float32)
        )
    for p in store.iter_points(collection, ids, with_vectors=[vector] if vector else False):
        if vector:
            matrix[len(out_ids)] = p.vectors[vector]
        out_ids.append(p.id)
        payload = p.payload or {}
        payloads.append({k: payload[k] for k in fields if k in payload} if fields else payload)
    if isinstance(matrix, np.ndarray):
        matrix = matrix[: len(out_ids)]
    return out_ids, payloads, matrix


def photo_features(
    store: VectorStore,
    collection: str,
    ids: list[int],
    payloads: list[dict],
    progress: Progress = NO_PROGRESS,
    *,
    photos: DecodedPhotos | None = None,
    scratch: Path | None = None,
) -> Features:
    """The products' photos as the `finetune` network reads them (uint8, PHOTO_SIZE), cut out
    if the collection cuts out its photos, read from disk a batch at a time: the run's
    decoded `photos` (what they lack is decoded now), else decoded photos of its own under
    `scratch` (the data dir), removed by Features.close."""
    from classifier.model import PHOTO_SIZE

    root = catalog_root(store, collection)
    paths = [root / p["image"] if p.get("image") else NO_IMAGE for p in payloads]
    cutout = collection_cutout(store, collection)
    owned = None
    if photos is None or photos.cutout != cutout:
        owned = photos = DecodedPhotos(decoded_dir(scratch or default_data_dir()), cutout=cutout)
    size = (*PHOTO_SIZE, "letterbox")
    good = photos.ensure(ids, paths, size, progress)
    kept = set(good)
    bad = [(ids[i], photos.problem(ids[i])) for i in range(len(ids)) if i not in kept]
    rows = photos.rows([ids[i] for i in good], size)
    return Features([ids[i] for i in good], [payloads[i] for i in good], rows, bad, owned)


def collection_features(
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    kind: str,
    ids: Sequence[int] | None = None,
    progress: Progress = NO_PROGRESS,
    scratch: Path | None = None,
    photos: DecodedPhotos | None = None,
) -> Features:
    """What a tagger of `kind` reads, from disk a batch at a time where `scratch` (the data
    dir) is given: the stored vectors (kept in a file there), or the photos (the run's
    decoded `photos`, see photo_features). Close the Features after."""
    progress.phase("classifier features", len(ids) if ids is not None else store.count(collection))
    if kind == "vectors":
        got_ids, payloads, matrix = collection_payloads(
            store, collection, ids, spec.vector_name, scratch=scratch, fields=LABEL_FIELDS
        )
        progress.advance(len(got_ids))
        return Features(got_ids, payloads, matrix)
    got_ids, payloads, _ = collection_payloads(store, collection, ids)
    return photo_features(
        store, collection, got_ids, payloads, progress, photos=photos, scratch=scratch
    )


def _batches(features, targets: dict[str, np.ndarray], rows: np.ndarray, batch_size: int,
             seed: int | None = None):  # fmt: skip
    """(features, {scheme: class}) batches of the products at `rows`, each read when Keras
    asks for it (features may be rows on disk: memory holds a batch). With `seed`, the rows
    go in a new order each epoch, a function of the seed and the epoch."""
    import keras

    rows = np.asarray(rows)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = self._ordered()

        def _ordered(self) -> np.ndarray:
            if seed is None:
                return rows
            return np.random.default_rng([seed, self.epoch]).permutation(rows)

        def __len__(self) -> int:
            return -(-len(rows) // batch_size)

        def __getitem__(self, i: int):
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            return features[idx], {s: y[idx] for s, y in targets.items()}

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = self._ordered()

    return Batches()


@dataclass
class TrainReport:
    record: TaggerRecord
    directory: Path
    tagged: int
    skipped: list[tuple[int, str]]
    figures: list[Path] = field(default_factory=list)


def train_classifier(
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    data_dir: Path,
    *,
    kind: str = DEFAULT_KIND,
    epochs: int | None = None,
    seed: int = 0,
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE,
    figures_dir: Path | None = None,
    progress: Progress = NO_PROGRESS,
    photos: DecodedPhotos | None = None,
) -> TrainReport:
    """Train on a stratified 80 % (early stopping on 10 % of it), measure on the other 20 %,
    save, and tag every product of the collection. `epochs`: at most this many
    (default: DEFAULT_EPOCHS of the kind). `photos`: the run's decoded photos (a `finetune`
    classifier reads them)."""
    import keras
    import tensorflow as tf

    from classifier.metrics import plot_confusion, plot_precision_recall, scheme_metrics

    tf.config.experimental.enable_op_determinism()  # same seed, same model
    from classifier.model import build_finetune, build_head

    check_kind(kind)
    epochs = epochs or DEFAULT_EPOCHS[kind]
    t0 = time.perf_counter()
    feats = collection_features(
        store, collection, spec, kind, progress=progress, scratch=data_dir, photos=photos
    )
    with contextlib.closing(feats):  # vectors on disk: removed however training ends
        t_features = time.perf_counter() - t0
        schemes = [SchemeClasses.from_payloads(s, feats.payloads, min_class_size) for s in SCHEMES]
        empty = [sc.scheme for sc in schemes if len(sc.classes) < 2]
        if empty:
            raise TooLittleData(
                f"too few products to train {', '.join(empty)}: a scheme needs two classes of at "
                f"least {min_class_size} products (--min-class-size); the collection has "
                f"{len(feats.ids)} products: {training_advice(feats.payloads, min_class_size)}"
            )
        targets = {sc.scheme: sc.encode(feats.payloads) for sc in schemes}
        split = stratified_split(feats.payloads, seed)
        input_shape = tuple(feats.matrix.shape[1:])
        rate = LEARNING_RATE[kind]
        if kind == "finetune":
            model = build_finetune(spec, schemes, seed)
            steps = epochs * int(np.ceil(len(split.train) / BATCH[kind]))
            rate = keras.optimizers.schedules.CosineDecay(rate, steps)
        else:
            model = build_head(schemes, input_shape, seed)
        loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=IGNORE)
        model.compile(keras.optimizers.Adam(rate), loss={s: loss for s in targets})

        class _Report(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                progress.note(
                    f"classifier epoch {epoch + 1}: loss {logs.get('loss', 0):.4f}, "
                    f"val_loss {logs.get('val_loss', 0):.4f}"
                )

        t1 = time.perf_counter()
        history = model.fit(
            _batches(feats.matrix, targets, split.train, BATCH[kind], seed),
            validation_data=_batches(feats.matrix, targets, split.val, PREDICT_BATCH),
            epochs=epochs,
            shuffle=False,  # the batches shuffle their rows; Keras shuffling them cost 30 %
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=PATIENCE, restore_best_weights=True
                ),
                _Report(),
            ],
        )
        t_train = time.perf_counter() - t1
        probs = predict_probs(model, feats.matrix, schemes)
        test = split.test
        metrics = {
            sc.scheme: scheme_metrics(sc, targets[sc.scheme][test], p[test])
            for sc, p in zip(schemes, probs)
        }
        record = TaggerRecord(
            kind=kind,
            embedder=spec.to_record(),
            input_shape=list(input_shape),
            schemes=schemes,
            min_class_size=min_class_size,
            seed=seed,
            split=split.sizes(),
            test_ids=[feats.ids[i] for i in test],
            trained_on={
                "collection": collection,
                "catalog": str(catalog_root(store, collection)),
                "products": len(feats.ids),
            },
            metrics=metrics,
            history=[
                {k: round(float(v[i]), 5) for k, v in history.history.items()}
                for i in range(len(history.history["loss"]))
            ],
            seconds={"features": round(t_features, 1), "train": round(t_train, 1)},
        )
        directory = tagger_dir(data_dir, collection)
        save_tagger(model, record, directory)
        figures = []
        out = Path(figures_dir) if figures_dir else directory
        out.mkdir(parents=True, exist_ok=True)
        for sc, p in zip(schemes, probs):
            y = targets[sc.scheme][test]
            figures.append(plot_confusion(sc, y, p[test], out / f"confusion_{sc.scheme}.png"))
            figures.append(
                plot_precision_recall(sc, y, p[test], out / f"precision_recall_{sc.scheme}.png")
            )
        t2 = time.perf_counter()
        tagged = write_tags(store, collection, feats.ids, schemes, probs, _network_mark(kind))
        record.seconds["tag"] = round(time.perf_counter() - t2, 1)
        record.seconds["total"] = round(time.perf_counter() - t0, 1)
        write_json_atomic(directory / RECORD_FILE, record.to_json())  # with the tagging time
        return TrainReport(record, directory, tagged, feats.skipped, figures)


def write_tags(
    store: VectorStore,
    collection: str,
    ids: Sequence[int],
    schemes: Sequence[SchemeClasses],
    probs: Sequence[np.ndarray],
    extra: dict | None = None,
) -> int:
    """pred_<scheme> and pred_<scheme>_conf (and `extra`) on every point; the pred fields
    keyword-indexed."""
    for sc in schemes:
        store.create_index(collection, pred_field(sc.scheme), KEYWORD_INDEX)
    for start in range(0, len(ids), 2000):  # pages, so that progress is durable
        store.set_payloads(collection, {
            pid: {**tag_payload(schemes, probs, row), **(extra or {})}
            for row, pid in enumerate(ids[start : start + 2000], start)
        })  # fmt: skip
    return len(ids)


def _network_mark(kind: str) -> dict:
    """The network's own tags of a finetune classifier wait for its neighbours' vote."""
    return {VOTED_FIELD: None} if kind == "finetune" else {}


def vote_pending(store: VectorStore, collection: str) -> bool:
    """A vote of every product was started and not finished (interrupted): the next vote
    must be of everyone again, since some tags predate the newest neighbours."""
    return bool(store.get_metadata(collection).get(VOTE_PENDING_KEY))


def _set_vote_pending(store: VectorStore, collection: str, pending: bool) -> None:
    metadata = store.get_metadata(collection)
    if bool(metadata.get(VOTE_PENDING_KEY)) != pending:
        metadata[VOTE_PENDING_KEY] = pending
        store.set_metadata(collection, metadata)


def tag_by_neighbours(
    store: VectorStore, collection: str, directory: Path, record: TaggerRecord, everyone: bool
) -> int:
    """With every tuned vector current: tag by their neighbours (classifier.neighbours, each
    product voted by the others) every product if `everyone` (new vectors change who is
    whose neighbour) or an earlier vote of everyone was interrupted (vote_pending), else
    those whose tags this model's vectors have not voted yet; and, the first time and with
    every vote of everyone (the vectors or the products may have changed), measure the vote
    on the record's test products (voted by the products outside the test part only).
    Returns how many were tagged."""
    from classifier.metrics import scheme_metrics  # sklearn: only when measuring

    ids, payloads, vectors = collection_payloads(store, collection, vector=TUNED_VECTOR)
    vectors = unit_rows(vectors)
    everyone = everyone or vote_pending(store, collection)
    if everyone or not record.neighbour_metrics:
        is_test = np.isin(np.array(ids), np.array(record.test_ids, dtype=np.int64))
        test, known = np.flatnonzero(is_test), np.flatnonzero(~is_test)
        if len(test) and len(known):
            probs = vote_among(record.schemes, payloads, vectors, test, known)
            truth = [payloads[r] for r in test]
            record.neighbour_metrics = {
                sc.scheme: scheme_metrics(sc, sc.encode(truth), p)
                for sc, p in zip(record.schemes, probs)
            }
            write_json_atomic(directory / RECORD_FILE, record.to_json())
    todo = np.array(
        [r for r, p in enumerate(payloads) if everyone or p.get(VOTED_FIELD) != record.model_file],
        dtype=np.int64,
    )
    if not len(todo):
        return 0
    if everyone:
        _set_vote_pending(store, collection, True)
    probs = vote_among(record.schemes, payloads, vectors, todo, np.arange(len(ids)))
    voted = {VOTED_FIELD: record.model_file}
    tagged = write_tags(store, collection, [ids[r] for r in todo], record.schemes, probs, voted)
    _set_vote_pending(store, collection, False)
    return tagged


def check_tagger(record: TaggerRecord, spec: EmbedderSpec, collection: str) -> None:
    if EmbedderSpec.from_record(record.embedder).identity() != spec.identity():
        raise ValueError(
            f"the classifier of {collection!r} was trained on features of another embedder "
            f"({record.embedder.get('backbone')}, {record.embedder.get('weights_id')}): "
            "retrain it with `searchctl train classifier`"
        )


@dataclass
class TagReport:
    tagged: int
    skipped: list[tuple[int, str]]
    seconds: float


def tag_collection(
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    data_dir: Path,
    ids: Sequence[int] | None = None,
    progress: Progress = NO_PROGRESS,
    photos: DecodedPhotos | None = None,
) -> TagReport:
    """Predict tags with the saved classifier for the given points (default: all) and store
    them (`photos`: the run's decoded photos, for a `finetune` classifier). All points of a
    finetune collection whose tuned vectors are this model's are voted by their neighbours
    straight away: the network's tags would only be replaced."""
    t0 = time.perf_counter()
    directory = tagger_dir(data_dir, collection)
    record = read_record(directory)
    voting = record is not None and record.kind == "finetune"
    if ids is None and voting and tuned_current(store, collection, record.model_file):
        check_tagger(record, spec, collection)
        progress.phase("classifier vote", store.count(collection))
        tagged = tag_by_neighbours(store, collection, directory, record, everyone=True)
        progress.advance(tagged)
        return TagReport(tagged, [], time.perf_counter() - t0)
    tagger = Tagger(directory)
    check_tagger(tagger.record, spec, collection)
    feats = collection_features(
        store, collection, spec, tagger.record.kind, ids, progress, scratch=data_dir, photos=photos
    )
    with contextlib.closing(feats):
        probs = tagger.predict(feats.matrix) if feats.ids else []
    mark = _network_mark(tagger.record.kind)
    tagged = (
        write_tags(store, collection, feats.ids, tagger.record.schemes, probs, mark)
        if feats.ids
        else 0
    )
    return TagReport(tagged, feats.skipped, time.perf_counter() - t0)


def missing_classifier(store: VectorStore, collection: str, needed_for: str) -> ClassifierMissing:
    """The error for a command that needs the classifier of a collection that has none,
    with the one command that trains one on its catalog (training_advice)."""
    _, payloads, _ = collection_payloads(store, collection)
    return ClassifierMissing(
        f"{needed_for} needs the classifier, and collection {collection!r} has none: "
        f"{training_advice(payloads)}"
    )


def has_classifier(data_dir: Path, collection: str) -> bool:
    return read_record(tagger_dir(data_dir, collection)) is not None


def untagged_ids(store: VectorStore, collection: str) -> list[int]:
    """Points without predicted tags (stored since the last tagging, or never tagged)."""
    ids, payloads, _ = collection_payloads(store, collection)
    field_name = pred_field(SCHEMES[-1])
    return [i for i, p in zip(ids, payloads) if p.get(field_name) is None]


def coverage_note(schemes: Sequence[SchemeClasses]) -> str:
    """Which schemes leave classes out (under --min-class-size): their products are tagged
    with the nearest class it knows, so the note says how many products that is."""
    parts = []
    for sc in schemes:
        left = sum(sc.left_out.values())
        if left and sc.kept_products:
            kept_share = sc.kept_products / (left + sc.kept_products)
            parts.append(
                f"{sc.scheme}: {len(sc.classes)} classes cover {kept_share:.0%} of products, "
                f"{left:,} products of {len(sc.left_out)} smaller classes get the nearest of them"
            )
    return (" Classes left out (--min-class-size): " + "; ".join(parts) + ".") if parts else ""


STAGE = "classifier"


def ensure_tags(
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    data_dir: Path,
    kind: str = DEFAULT_KIND,
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE,
    progress: Progress = NO_PROGRESS,
    photos: DecodedPhotos | None = None,
) -> StageReport:
    """After an ingest: train the classifier if there is none (and tag everything), else tag
    the points that have no tags yet. Too small a catalog to train on is not an error.
    `photos`: the run's decoded photos (a `finetune` classifier reads them)."""
    if not has_classifier(data_dir, collection):
        try:
            report = train_classifier(
                store,
                collection,
                spec,
                data_dir,
                kind=kind,
                min_class_size=min_class_size,
                progress=progress,
                photos=photos,
            )
        except TooLittleData as exc:
            return skipped(STAGE, str(exc), "Classifier not trained", tagged=0)
        accuracy = {s: m["accuracy"] for s, m in report.record.metrics.items()}
        shown = ", ".join(f"{s} {a:.3f}" for s, a in accuracy.items())
        summary = f"Classifier trained (test accuracy {shown}); tagged {report.tagged:,} products."
        summary += coverage_note(report.record.schemes)
        details = {"tagged": report.tagged, "accuracy": accuracy, "seconds": report.record.seconds}
        return StageReport(STAGE, Action.TRAINED, summary, details, report.skipped)
    todo = untagged_ids(store, collection)
    if not todo:
        return StageReport(STAGE, Action.UP_TO_DATE, "Every product is tagged.", {"tagged": 0})
    report = tag_collection(store, collection, spec, data_dir, todo, progress, photos)
    summary = f"Tagged {report.tagged:,} new products with the classifier."
    details = {"tagged": report.tagged, "seconds": round(report.seconds, 1)}
    return StageReport(STAGE, Action.TAGGED, summary, details, report.skipped)
