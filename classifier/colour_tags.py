"""Predicted baseColour: a small network on a product's backbone and colour vectors.

The default search's tag agreement (searchctl.query.tag_agreement) also counts a candidate
whose baseColour label is the query's predicted colour: on the shared catalog's held-out
products it took the baseColour match of the top 5 from 0.50 to 0.60, and to 0.615 with the
hidden layer (README, "Colour tags").
Every point gets `pred_baseColour` and `pred_baseColour_conf`, like the classifier's schemes.
Trained with scikit-learn (a one-hidden-layer MLP; a logistic regression for small catalogs);
predicted with numpy (no TensorFlow, under a millisecond a photo).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.schemes import COLOUR_TAG, conf_field, pred_field
from classifier.split import stratified_split
from classifier.tagger import models_dir, read_record, tagger_dir
from embedder.colour import COLOUR_VECTOR
from embedder.files import drop_other_models, save_file_fresh, write_json_atomic
from qdrant.base import KEYWORD_INDEX, VectorStore, unit_rows

MIN_COLOUR_PRODUCTS = 20  # rarer colours are not predicted (their products are not trained on)
# The colour histogram's weight beside the unit backbone vector. On the shared catalog's
# held-out products the MLP predicted 0.655 of colours at 4 (0.647 at 2, 0.654 at 6), the
# logistic regression 0.629 at 2 and 0.628 at 4. A tagger saved before it kept its scale
# used 2.
COLOUR_SCALE = 4.0
HIDDEN_UNITS = 512  # 1,024 predicted no better (0.655)
# Fewer training products than this get a logistic regression. Held-out colours predicted by
# the regression / the MLP from random parts of the shared catalog's training products:
# 1,000: 0.566 / 0.560; 3,000: 0.593 / 0.593; 10,000: 0.617 / 0.623; all 35,226: 0.629 / 0.655.
MLP_MIN_TRAIN = 3000
# How taggers are trained now; one saved by an older recipe (1: the regression alone, no
# record of it) is trained again by the next ingest or tag.
RECIPE = 2
WEIGHTS_PREFIX = "colour_tagger"  # colour_tagger-<time>-<pid>.npz, named by the record
LEGACY_WEIGHTS_FILE = "colour_tagger.npz"  # where taggers saved before that kept them
RECORD_FILE = "colour_tagger.json"
PAGE = 2000


def colour_tagger_dir(data_dir: Path, collection: str) -> Path:
    return models_dir(data_dir, collection) / "colour_tagger"


def tagger_input(backbone: np.ndarray, colour: np.ndarray, scale: float) -> np.ndarray:
    """Rows of [unit backbone vector, scale x colour vector]."""
    backbone = unit_rows(np.atleast_2d(np.asarray(backbone, dtype=np.float32)))
    colour = np.atleast_2d(np.asarray(colour, dtype=np.float32))
    return np.hstack([backbone, scale * colour])


@dataclass
class ColourTagger:
    classes: list[str]
    # (inputs x outputs, outputs) per layer, ReLU between; the last one's outputs are the
    # classes' logits
    layers: list[tuple[np.ndarray, np.ndarray]]
    backbone: str  # the named vector it reads beside the colour vector
    colour_scale: float
    record: dict  # test accuracy, products, seconds, test_ids (the products it never saw)

    def probs(self, backbone: np.ndarray, colour: np.ndarray) -> np.ndarray:
        logits = tagger_input(backbone, colour, self.colour_scale)
        for i, (weights, bias) in enumerate(self.layers):
            logits = logits @ weights + bias
            if i < len(self.layers) - 1:
                logits = np.maximum(logits, 0.0)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def tags(self, backbone: np.ndarray, colour: np.ndarray) -> list[dict]:
        """Payload-shaped tags (pred_baseColour, pred_baseColour_conf), one per row."""
        probs = self.probs(backbone, colour)
        best = probs.argmax(axis=1)
        return [
            {
                pred_field(COLOUR_TAG): self.classes[b],
                conf_field(COLOUR_TAG): round(float(p[b]), 4),
            }
            for b, p in zip(best, probs)
        ]

    def save(self, directory: Path) -> None:
        """Weights under a fresh name, then the record naming them: a kill at any point
        leaves the previous record with its own weights."""
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for i, (weights, bias) in enumerate(self.layers):
            arrays[f"weights{i}"], arrays[f"bias{i}"] = weights, bias
        weights_file = save_file_fresh(
            lambda path: np.savez(path, **arrays), directory, WEIGHTS_PREFIX, ".npz"
        )
        record = {**self.record, "classes": self.classes, "backbone": self.backbone}
        record.update(colour_scale=self.colour_scale, weights_file=weights_file)
        write_json_atomic(directory / RECORD_FILE, record)
        drop_other_models(directory, WEIGHTS_PREFIX, weights_file, ".npz")
        (directory / LEGACY_WEIGHTS_FILE).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path) -> ColourTagger | None:
        """The saved tagger, or None if there is none."""
        if not (directory / RECORD_FILE).exists():
            return None
        record = json.loads((directory / RECORD_FILE).read_text())
        weights_file = record.pop("weights_file", LEGACY_WEIGHTS_FILE)
        with np.load(directory / weights_file) as arrays:
            if "coef" in arrays:  # a logistic regression saved before the layers
                layers = [(arrays["coef"].T, arrays["intercept"])]
            else:
                count = len(arrays.files) // 2
                layers = [(arrays[f"weights{i}"], arrays[f"bias{i}"]) for i in range(count)]
        classes, backbone = record.pop("classes"), record.pop("backbone")
        return cls(classes, layers, backbone, record.pop("colour_scale", 2.0), record)


def _points(store: VectorStore, collection: str, backbone: str, ids=None):
    """ids, payloads, backbone and colour vectors of the points that have both vectors."""
    out_ids, payloads, shape, colour = [], [], [], []
    for p in store.iter_points(collection, ids, with_vectors=[backbone, COLOUR_VECTOR]):
        vectors = p.vectors or {}
        if backbone in vectors and COLOUR_VECTOR in vectors:
            out_ids.append(p.id)
            payloads.append(p.payload or {})
            shape.append(vectors[backbone])
            colour.append(vectors[COLOUR_VECTOR])
    return out_ids, payloads, np.asarray(shape, np.float32), np.asarray(colour, np.float32)


def _fit(x: np.ndarray, y: np.ndarray, seed: int):
    """The fitted scikit-learn model and its layers (weights, bias), float32."""
    if len(x) >= MLP_MIN_TRAIN:
        from sklearn.neural_network import MLPClassifier

        model = MLPClassifier((HIDDEN_UNITS,), early_stopping=True, random_state=seed)
        model.fit(x, y)
        pairs = zip(model.coefs_, model.intercepts_)
    else:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=300)
        model.fit(x, y)
        pairs = [(model.coef_.T, model.intercept_)]
    return model, [(w.astype(np.float32), b.astype(np.float32)) for w, b in pairs]


def _all_classes(weights: np.ndarray, bias: np.ndarray, fitted: np.ndarray, count: int):
    """The output layer widened to all `count` classes from the model's `fitted` ones; a
    colour absent from training can never win."""
    out_w = np.zeros((weights.shape[0], count), np.float32)
    out_b = np.full(count, -1e9, np.float32)
    if len(fitted) == 2:  # one logit, of the second class: softmax([0, z]) is sigmoid(z)
        out_b[fitted[0]] = 0.0
        out_w[:, fitted[1]], out_b[fitted[1]] = weights[:, 0], bias[0]
    else:
        out_w[:, fitted], out_b[fitted] = weights, bias
    return out_w, out_b


def train_colour_tagger(
    store: VectorStore,
    collection: str,
    backbone: str,
    test_ids: Collection[int] | None = None,
    seed: int = 0,
) -> ColourTagger | None:
    """Fit on every product but `test_ids` (the classifier's test products, so that the audit
    knows which colour labels it never saw), measure on those; without them, on a seeded
    stratified split. None when fewer than two colours have MIN_COLOUR_PRODUCTS products."""
    t0 = time.perf_counter()
    ids, payloads, shape, colour = _points(store, collection, backbone)
    labels = [p.get(COLOUR_TAG) for p in payloads]
    counts: dict[str, int] = {}
    for label in labels:
        if label:
            counts[label] = counts.get(label, 0) + 1
    classes = sorted(c for c, n in counts.items() if n >= MIN_COLOUR_PRODUCTS)
    if len(classes) < 2:
        return None
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(label, -1) for label in labels])
    if test_ids is None:
        split = stratified_split(payloads, seed)
        train, test = np.concatenate([split.train, split.val]), split.test
    else:
        is_test = np.isin(np.array(ids, dtype=np.int64), np.array(list(test_ids), np.int64))
        train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    train, test = train[y[train] >= 0], test[y[test] >= 0]
    model, layers = _fit(tagger_input(shape[train], colour[train], COLOUR_SCALE), y[train], seed)
    layers[-1] = _all_classes(*layers[-1], model.classes_, len(classes))
    tagger = ColourTagger(classes, layers, backbone, COLOUR_SCALE, {})
    accuracy = None
    if len(test):
        predicted = tagger.probs(shape[test], colour[test]).argmax(axis=1)
        accuracy = round(float((predicted == y[test]).mean()), 4)
    tagger.record = {
        "test_accuracy": accuracy,
        "test_products": int(len(test)),
        "trained_on": int(len(train)),
        "model": "mlp" if len(layers) > 1 else "logistic regression",
        "recipe": RECIPE,
        "seed": seed,  # the split's without test_ids, and the MLP's initial weights
        "test_ids": [ids[r] for r in test],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return tagger


def ensure_colour_tags(
    store: VectorStore,
    collection: str,
    data_dir: Path,
    backbone: str,
    *,
    retag: bool = False,
    on_plan: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """Train the colour tagger if the collection has none (or one of another backbone or an
    older RECIPE) and tag every point, else tag the points without a predicted colour (every
    point if `retag`). Skipped, with the reason,
    without colour vectors or baseColour labels to learn from."""
    t0 = time.perf_counter()
    if COLOUR_VECTOR not in store.vector_sizes(collection):
        return {"action": "skipped", "reason": "no colour vectors (ingest without --no-colour)"}
    directory = colour_tagger_dir(data_dir, collection)
    tagger = ColourTagger.load(directory)
    trained = tagger is None or tagger.backbone != backbone or tagger.record.get("recipe") != RECIPE
    if trained:
        classifier = read_record(tagger_dir(data_dir, collection))
        test_ids = classifier.test_ids if classifier else None
        tagger = train_colour_tagger(store, collection, backbone, test_ids)
        if tagger is None:
            return {
                "action": "skipped",
                "reason": f"fewer than two baseColour labels with {MIN_COLOUR_PRODUCTS} products",
            }
        tagger.save(directory)
    field = pred_field(COLOUR_TAG)
    todo = [
        p.id
        for p in store.iter_points(collection)
        if trained or retag or (p.payload or {}).get(field) is None
    ]
    if on_plan:
        on_plan(len(todo))
    store.create_index(collection, field, KEYWORD_INDEX)
    tagged = 0
    for start in range(0, len(todo), PAGE):
        ids, _, shape, colour = _points(store, collection, backbone, todo[start : start + PAGE])
        if ids:
            tags = tagger.tags(shape, colour)
            store.set_payloads(collection, dict(zip(ids, tags)))
            tagged += len(ids)
        if on_progress:
            on_progress(len(todo[start : start + PAGE]))
    if tagged:
        store.optimize(collection)  # payload writes leave points outside the HNSW index
    return {
        "action": "trained" if trained else ("tagged" if todo else "up_to_date"),
        "tagged": tagged,
        "test_accuracy": tagger.record.get("test_accuracy"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
