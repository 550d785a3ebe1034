"""Train the tagger on a collection, write its predictions into the payloads, re-tag later.

Data flow: store (ids, labels, image paths or vectors) -> features -> split -> train ->
test metrics -> saved tagger -> pred_* payload fields (keyword-indexed for filtering).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classifier.schemes import (
    DEFAULT_MIN_CLASS_SIZE,
    IGNORE,
    SCHEMES,
    SchemeClasses,
    pred_field,
    tag_payload,
)
from classifier.split import stratified_split
from classifier.tagger import (
    RECORD_FILE,
    Tagger,
    TaggerRecord,
    predict_probs,
    read_record,
    save_tagger,
    tagger_dir,
)
from embedder.files import write_json_atomic
from embedder.images import BadImage, load_image
from embedder.spec import EmbedderSpec
from ingest.stored import catalog_root, collection_cutout
from qdrant.base import KEYWORD_INDEX, VectorStore

DEFAULT_KIND = "vectors"
DEFAULT_EPOCHS = 12
PATIENCE = 3
BATCH = 128
LEARNING_RATE = {"finetune": 3e-4, "vectors": 3e-4}


@dataclass
class Features:
    ids: list[int]
    payloads: list[dict]
    matrix: np.ndarray
    skipped: list[tuple[int, str]] = field(default_factory=list)


def collection_payloads(
    store: VectorStore, collection: str, ids: Sequence[int] | None = None, vector: str | None = None
) -> tuple[list[int], list[dict], np.ndarray | None]:
    """ids, payloads (and the named vector, if asked) of the collection's points, in id order."""
    out_ids, payloads, rows = [], [], []
    for p in store.iter_points(collection, ids, with_vectors=bool(vector)):
        out_ids.append(p.id)
        payloads.append(p.payload or {})
        if vector:
            rows.append(p.vectors[vector])
    matrix = np.asarray(rows, dtype=np.float32) if vector else None
    return out_ids, payloads, matrix


def image_features(
    spec: EmbedderSpec,
    root: Path,
    ids: list[int],
    payloads: list[dict],
    cutout: bool,
    batch_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> Features:
    """Trunk feature maps of the products' images (one pass over the catalog images)."""
    from classifier.model import TrunkEmbedder

    embedder = TrunkEmbedder(spec)

    def decode(item):
        pid, payload = item
        rel = payload.get("image")
        if not rel:
            return pid, payload, None, "no image path in the payload"
        try:
            size = spec.input_height, spec.input_width
            return pid, payload, load_image(root / rel, *size, cutout=cutout), None
        except BadImage as exc:
            return pid, payload, None, str(exc)

    feats = Features([], [], np.zeros((0, *embedder.trunk_shape), np.float16))
    blocks = []
    items = list(zip(ids, payloads))
    with ThreadPoolExecutor(2, thread_name_prefix="searchctl-decode") as pool:
        for start in range(0, len(items), batch_size):
            decoded = list(pool.map(decode, items[start : start + batch_size]))
            good = [d for d in decoded if d[2] is not None]
            feats.skipped += [(d[0], d[3]) for d in decoded if d[2] is None]
            if good:
                _, fmap = embedder.embed(np.stack([d[2] for d in good]))
                blocks.append(fmap)
                feats.ids += [d[0] for d in good]
                feats.payloads += [d[1] for d in good]
            if on_progress:
                on_progress(len(decoded))
    if blocks:
        feats.matrix = np.concatenate(blocks)
    return feats


def collection_features(
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    kind: str,
    ids: Sequence[int] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Features:
    """What a tagger of `kind` reads: trunk maps of the images, or the stored vectors."""
    if kind == "vectors":
        got_ids, payloads, matrix = collection_payloads(store, collection, ids, spec.vector_name)
        if on_progress:
            on_progress(len(got_ids))
        return Features(got_ids, payloads, matrix)
    got_ids, payloads, _ = collection_payloads(store, collection, ids)
    root, cutout = catalog_root(store, collection), collection_cutout(store, collection)
    return image_features(spec, root, got_ids, payloads, cutout, on_progress=on_progress)


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
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE,
    figures_dir: Path | None = None,
    on_features: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> TrainReport:
    """Train on a stratified 80 % (early stopping on 10 % of it), measure on the other 20 %,
    save, and tag every product of the collection."""
    import keras
    import tensorflow as tf

    from classifier.metrics import plot_confusion, plot_precision_recall, scheme_metrics

    tf.config.experimental.enable_op_determinism()  # same seed, same model
    from classifier.model import CUT_LAYERS, build_head

    t0 = time.perf_counter()
    n = store.count(collection)
    if on_features:
        on_features(n)
    feats = collection_features(store, collection, spec, kind, on_progress=on_progress)
    t_features = time.perf_counter() - t0
    schemes = [SchemeClasses.from_payloads(s, feats.payloads, min_class_size) for s in SCHEMES]
    empty = [sc.scheme for sc in schemes if len(sc.classes) < 2]
    if empty:
        raise ValueError(
            f"too few products to train {', '.join(empty)}: a scheme needs two classes of at "
            f"least {min_class_size} products (--min-class-size); the collection has "
            f"{len(feats.ids)} products"
        )
    targets = {sc.scheme: sc.encode(feats.payloads) for sc in schemes}
    split = stratified_split(feats.payloads, seed)
    backbone, cut = None, None
    if kind == "finetune":
        from embedder.model import load_backbone

        backbone, cut = load_backbone(spec), CUT_LAYERS[spec.backbone]
    input_shape = tuple(feats.matrix.shape[1:])
    model = build_head(kind, schemes, input_shape, backbone, cut, seed)
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=IGNORE)
    model.compile(
        keras.optimizers.Adam(LEARNING_RATE[kind]),
        loss={s: loss for s in targets},
    )

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if on_epoch:
                on_epoch(epoch + 1, dict(logs or {}))

    def rows(idx):
        return feats.matrix[idx].astype(np.float32), {s: y[idx] for s, y in targets.items()}

    t1 = time.perf_counter()
    history = model.fit(
        *rows(split.train),
        validation_data=rows(split.val),
        epochs=epochs,
        batch_size=BATCH,
        shuffle=True,
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
        cut_layer=cut,
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
    tagged = write_tags(store, collection, feats.ids, schemes, probs)
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
) -> int:
    """pred_<scheme> and pred_<scheme>_conf on every point; the pred fields keyword-indexed."""
    for sc in schemes:
        store.create_index(collection, pred_field(sc.scheme), KEYWORD_INDEX)
    payloads = {pid: tag_payload(schemes, probs, row) for row, pid in enumerate(ids)}
    for start in range(0, len(ids), 2000):  # pages, so that progress is durable
        chunk = list(ids[start : start + 2000])
        store.set_payloads(collection, {pid: payloads[pid] for pid in chunk})
    return len(payloads)


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
    on_features: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> TagReport:
    """Predict tags with the saved classifier for the given points (default: all) and store them."""
    t0 = time.perf_counter()
    directory = tagger_dir(data_dir, collection)
    tagger = Tagger(directory)
    check_tagger(tagger.record, spec, collection)
    if on_features:
        on_features(len(ids) if ids is not None else store.count(collection))
    feats = collection_features(store, collection, spec, tagger.record.kind, ids, on_progress)
    probs = tagger.predict(feats.matrix) if feats.ids else []
    tagged = (
        write_tags(store, collection, feats.ids, tagger.record.schemes, probs) if feats.ids else 0
    )
    return TagReport(tagged, feats.skipped, time.perf_counter() - t0)


def has_classifier(data_dir: Path, collection: str) -> bool:
    return read_record(tagger_dir(data_dir, collection)) is not None


def untagged_ids(store: VectorStore, collection: str) -> list[int]:
    """Points without predicted tags (stored since the last tagging, or never tagged)."""
    ids, payloads, _ = collection_payloads(store, collection)
    field_name = pred_field(SCHEMES[-1])
    return [i for i, p in zip(ids, payloads) if p.get(field_name) is None]


def ensure_tags(
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    data_dir: Path,
    kind: str = DEFAULT_KIND,
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE,
    on_features: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> dict:
    """After an ingest: train the classifier if there is none (and tag everything), else tag
    the points that have no tags yet. Too small a catalog to train on is not an error."""
    if not has_classifier(data_dir, collection):
        try:
            report = train_classifier(
                store,
                collection,
                spec,
                data_dir,
                kind=kind,
                min_class_size=min_class_size,
                on_features=on_features,
                on_progress=on_progress,
                on_epoch=on_epoch,
            )
        except ValueError as exc:
            if "too few products" not in str(exc):
                raise
            return {"action": "skipped", "tagged": 0, "reason": str(exc)}
        return {
            "action": "trained",
            "tagged": report.tagged,
            "accuracy": {s: m["accuracy"] for s, m in report.record.metrics.items()},
            "seconds": report.record.seconds,
        }
    todo = untagged_ids(store, collection)
    if not todo:
        return {"action": "up_to_date", "tagged": 0}
    report = tag_collection(store, collection, spec, data_dir, todo, on_features, on_progress)
    return {"action": "tagged", "tagged": report.tagged, "seconds": round(report.seconds, 1)}
