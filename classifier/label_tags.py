"""Label taggers: small networks on a product's stored vectors that predict one catalog label
over all its classes with MIN_PRODUCTS products, where the classifier leaves classes out.

- baseColour (`COLOUR`), from the backbone and colour vectors. The default search's tag
  agreement (searchctl.query.tag_agreement) also counts a candidate whose baseColour label is
  the query's predicted colour: on the shared catalog's held-out products it took the
  baseColour match of the top 5 from 0.50 to 0.60, and to 0.615 with the hidden layer
  (docs/quality.md, "Colour tags").
- articleType over every type (`FINE_TYPE`), from the backbone and tuned vectors (the colour
  vector where there are no current tuned ones). The classifier's articleType scheme leaves
  out types under 500 products, a fifth of the shared catalog; in the search's agreement this
  tag stands for it (docs/quality.md, "Every articleType").

Every point gets `pred_<tag>` and `pred_<tag>_conf`, like the classifier's schemes.
Trained with scikit-learn (a one-hidden-layer MLP; a logistic regression for small catalogs);
predicted with numpy (no TensorFlow, under a millisecond a photo).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.schemes import COLOUR_TAG, FINE_TYPE_TAG, TUNED_VECTOR, conf_field, pred_field
from classifier.split import STRATIFY_FIELD, stratified_split
from classifier.tagger import read_record, softmax_rows, tagger_dir
from classifier.tuned import CURRENT_KEY
from embedder.colour import COLOUR_VECTOR
from embedder.files import drop_other_models, models_dir, save_file_fresh, write_json_atomic
from embedder.shopper import ShopperSet, load_shopper_set, read_shopper_record
from qdrant.base import KEYWORD_INDEX, VectorStore, unit_rows
from searchctl.reporting import (
    NO_PROGRESS,
    Action,
    Progress,
    StageReport,
    TooLittleData,
    skipped,
)

MIN_PRODUCTS = 20  # rarer classes are not predicted (their products are not trained on)
# A tagger gives every product one of its classes: it is trained only when the labels with
# MIN_PRODUCTS products (two at least) cover MIN_COVERAGE of the labelled products. On a
# 200-product sample of the shared catalog two colours qualified, and every product became
# Black or White at a test accuracy of 0.93 (measured on those two colours only).
MIN_CLASSES = 2
MIN_COVERAGE = 0.8
# The colour histogram's weight beside the unit backbone vector. On the shared catalog's
# held-out products the MLP predicted 0.655 of colours at 4 (0.647 at 2, 0.654 at 6), the
# logistic regression 0.629 at 2 and 0.628 at 4. A colour tagger saved before it kept its
# scale used 2.
COLOUR_SCALE = 4.0
HIDDEN_UNITS = 512  # 1,024 predicted no better colours (0.655)
# Fewer training products than this get a logistic regression. Held-out colours predicted by
# the regression / the MLP from random parts of the shared catalog's training products:
# 1,000: 0.566 / 0.560; 3,000: 0.593 / 0.593; 10,000: 0.617 / 0.623; all 35,226: 0.629 / 0.655.
MLP_MIN_TRAIN = 3000
# How taggers are trained now; one saved by an older recipe (1: the regression alone, no
# record of it) is trained again by the next ingest or tag.
RECIPE = 2
LEGACY_WEIGHTS_FILE = "colour_tagger.npz"  # where colour taggers saved before kept them
PAGE = 2000
# Products a tagger learns from and is measured on, at most: a larger catalog's are a seeded
# sample, so its training arrays (5.6 kB of vectors a product, and the MLP's copies), not the
# catalog, set the stage's memory. The shared catalog's 44k products are all used.
TRAIN_LIMIT = 100_000
TEST_LIMIT = 20_000
TAGGED_ALL = "tagged_all"  # in a tagger's record: every point carries its tags

Inputs = tuple[tuple[str, float], ...]  # (named vector, scale) per part of a tagger's input


@dataclass(frozen=True)
class TaggedLabel:
    """What a label tagger predicts: `tag` (its payload fields pred_<tag>, pred_<tag>_conf)
    from the catalog label `label`; its files are `name`-*.npz and `name`.json in a folder
    `name` of the collection's models."""

    tag: str
    label: str
    name: str
    # Also learns from the collection's shopper photos (embedder.shopper), where they hold
    # its inputs: a shopper's photo's type is what the search's tag agreement reads most.
    learns_shopper_photos: bool = False
    # Trained for this many epochs, without early stopping (None: early stopping on a tenth
    # held out): see TYPE_TAGGER_EPOCHS.
    epochs: int | None = None

    @property
    def stage(self) -> str:
        """Its stage's key in ingest, tag and train reports: colour_tags, type_tags."""
        return self.name.replace("_tagger", "_tags")


COLOUR = TaggedLabel(COLOUR_TAG, "baseColour", "colour_tagger")
# Early stopping picked the type tagger's epoch from a noisy plateau: with the shopper photos
# in, its held-out accuracy ranged 0.816-0.825 with the split's seed and the set's photos
# (best epoch 20 to 43), and one upgrade whose tagger stopped early lost 3 points of
# leave-one-out articleType. 30 epochs on every row gave 0.826-0.828 in as much time; the
# colour tagger, without shopper photos, was as good either way (0.646-0.653) and keeps early
# stopping (docs/quality.md, "Shoppers' photos, fifth round").
TYPE_TAGGER_EPOCHS = 30
FINE_TYPE = TaggedLabel(
    FINE_TYPE_TAG,
    "articleType",
    "type_tagger",
    learns_shopper_photos=True,
    epochs=TYPE_TAGGER_EPOCHS,
)
LABEL_TAGGERS = (COLOUR, FINE_TYPE)


def label_tagger_dir(data_dir: Path, collection: str, kind: TaggedLabel) -> Path:
    return models_dir(data_dir, collection) / kind.name


def tagger_inputs(
    kind: TaggedLabel, vectors: Collection[str], backbone: str, tuned_current: bool
) -> Inputs | None:
    """The named vectors (and scales) a `kind` tagger reads in a collection of `vectors`, or
    None when it lacks them. articleType over every type, held out on the shared catalog:
    0.873 from backbone and tuned vectors (types the classifier leaves out: 0.744), 0.823 from
    backbone and colour."""
    if kind == COLOUR:
        return (
            ((backbone, 1.0), (COLOUR_VECTOR, COLOUR_SCALE)) if COLOUR_VECTOR in vectors else None
        )
    if tuned_current and TUNED_VECTOR in vectors:
        return ((backbone, 1.0), (TUNED_VECTOR, 1.0))
    if COLOUR_VECTOR in vectors:
        return ((backbone, 1.0), (COLOUR_VECTOR, COLOUR_SCALE))
    return ((backbone, 1.0),)


def tagger_input(vectors: Mapping[str, np.ndarray], inputs: Inputs) -> np.ndarray:
    """Rows of [scale x unit vector] for each of the `inputs`."""
    parts = [
        scale * unit_rows(np.atleast_2d(np.asarray(vectors[name], np.float32)))
        for name, scale in inputs
    ]
    return np.hstack(parts)


@dataclass
class LabelTagger:
    kind: TaggedLabel
    classes: list[str]
    # (inputs x outputs, outputs) per layer, ReLU between; the last one's outputs are the
    # classes' logits
    layers: list[tuple[np.ndarray, np.ndarray]]
    inputs: Inputs
    # test accuracy, products, seconds, test_ids (the products it never saw), tuned_model
    # (the mark of the tuned vectors it read, ingest.tuned)
    record: dict

    @property
    def vectors(self) -> list[str]:
        return [name for name, _ in self.inputs]

    def reads_current(self, tuned_mark: str | None) -> bool:
        """It reads no tuned vectors, or those of the collection's current mark (ingest.tuned):
        a retrained classifier re-embeds them, and then this tagger is out of date."""
        return TUNED_VECTOR not in self.vectors or (
            tuned_mark is not None and self.record.get("tuned_model") == tuned_mark
        )

    def probs(self, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Class probabilities of rows of the named `vectors` it reads."""
        logits = tagger_input(vectors, self.inputs)
        for i, (weights, bias) in enumerate(self.layers):
            logits = logits @ weights + bias
            if i < len(self.layers) - 1:
                logits = np.maximum(logits, 0.0)
        return softmax_rows(logits)

    def tags(self, vectors: Mapping[str, np.ndarray]) -> list[dict]:
        """Payload-shaped tags (pred_<tag>, pred_<tag>_conf), one per row."""
        probs = self.probs(vectors)
        best = probs.argmax(axis=1)
        tag = self.kind.tag
        return [
            {pred_field(tag): self.classes[b], conf_field(tag): round(float(p[b]), 4)}
            for b, p in zip(best, probs)
        ]

    def save(self, directory: Path) -> None:
        """Weights under a fresh name, then the record naming them: a kill at any point
        leaves the previous record with its own weights."""
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for i, (weights, bias) in enumerate(self.layers):
            arrays[f"weights{i}"], arrays[f"bias{i}"] = weights, bias
        prefix = self.kind.name
        weights_file = save_file_fresh(
            lambda path: np.savez(path, **arrays), directory, prefix, ".npz"
        )
        record = {**self.record, "tag": self.kind.tag, "classes": self.classes}
        record.update(inputs=[list(i) for i in self.inputs], weights_file=weights_file)
        write_json_atomic(directory / f"{prefix}.json", record)
        drop_other_models(directory, prefix, weights_file, ".npz")
        (directory / LEGACY_WEIGHTS_FILE).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path, kind: TaggedLabel) -> LabelTagger | None:
        """The saved tagger, or None if there is none."""
        path = directory / f"{kind.name}.json"
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        weights_file = record.pop("weights_file", LEGACY_WEIGHTS_FILE)
        with np.load(directory / weights_file) as arrays:
            if "coef" in arrays:  # a logistic regression saved before the layers
                layers = [(arrays["coef"].T, arrays["intercept"])]
            else:
                count = len(arrays.files) // 2
                layers = [(arrays[f"weights{i}"], arrays[f"bias{i}"]) for i in range(count)]
        if "inputs" in record:
            inputs = tuple((name, float(scale)) for name, scale in record.pop("inputs"))
        else:  # a colour tagger saved before taggers named their inputs
            scale = record.pop("colour_scale", 2.0)
            inputs = ((record.pop("backbone"), 1.0), (COLOUR_VECTOR, scale))
        record.pop("tag", None)
        return cls(kind, record.pop("classes"), layers, inputs, record)


def load_label_taggers(
    data_dir: Path, collection: str, tuned_mark: str | None = None, current: bool = False
) -> dict[str, LabelTagger]:
    """tag -> the collection's saved label tagger, for those it has; with `current`, only
    those that read current vectors (reads_current: `tuned_mark` is the collection's)."""
    found = {}
    for kind in LABEL_TAGGERS:
        tagger = LabelTagger.load(label_tagger_dir(data_dir, collection, kind), kind)
        if tagger is not None and (not current or tagger.reads_current(tuned_mark)):
            found[kind.tag] = tagger
    return found


def _points(store: VectorStore, collection: str, names: list[str], ids=None):
    """ids, payloads and {name: vectors} of the points that have every vector of `names`
    (each vector written into one matrix as it comes: no list of rows beside it)."""
    out_ids, payloads = [], []
    count = len(ids) if ids is not None else store.count(collection)
    sizes = store.vector_sizes(collection)
    rows = {name: np.empty((count, sizes[name]), np.float32) for name in names}
    for p in store.iter_points(collection, ids, with_vectors=names):
        vectors = p.vectors or {}
        if all(name in vectors for name in names):
            for name in names:
                rows[name][len(out_ids)] = vectors[name]
            out_ids.append(p.id)
            payloads.append(p.payload or {})
    return out_ids, payloads, {name: r[: len(out_ids)] for name, r in rows.items()}


def _labelled(store: VectorStore, collection: str, kind: TaggedLabel):
    """ids and slim payloads (the label, the split's stratum) of every point, in id order,
    read without their vectors (a point lacking one is left out when they are read)."""
    fields = (kind.label, STRATIFY_FIELD)
    ids, payloads = [], []
    for p in store.iter_points(collection):
        ids.append(p.id)
        payloads.append({f: (p.payload or {}).get(f) for f in fields})
    return ids, payloads


def _at_most(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """`rows`, or a seeded sample of `limit` of them (in their order)."""
    if len(rows) <= limit:
        return rows
    return np.sort(rng.choice(rows, limit, replace=False))


def _rows_with_vectors(
    store: VectorStore, collection: str, names: list[str], ids: list[int], rows: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Those of `rows` (indexes into `ids`) whose points have every vector of `names`, and
    their vectors, read now: only the rows a tagger learns from or is measured on."""
    found, _, vectors = _points(store, collection, names, [ids[r] for r in rows])
    if len(found) < len(rows):
        have = set(found)
        rows = np.array([r for r in rows if ids[r] in have], dtype=rows.dtype)
    return rows, vectors


def _shopper_rows(
    shoppers: ShopperSet | None, names: list[str], class_of: Mapping[int, int]
) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """The shopper photos' vectors of `names` and their classes, for the photos of products
    in `class_of` (product id -> class); None without a set that holds those vectors."""
    if shoppers is None or not all(name in shoppers.vectors for name in names):
        return None
    rows = np.array([int(i) in class_of for i in shoppers.ids], bool)
    if not rows.any():
        return None
    classes = np.array([class_of[int(i)] for i in shoppers.ids[rows]])
    return {name: shoppers.vectors[name][rows] for name in names}, classes


def _fit(x: np.ndarray, y: np.ndarray, seed: int, epochs: int | None = None):
    """The fitted scikit-learn model and its layers (weights, bias), float32: an MLP with
    early stopping, or trained for `epochs`, where the rows are enough."""
    if len(x) >= MLP_MIN_TRAIN:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        if epochs is None:
            model = MLPClassifier((HIDDEN_UNITS,), early_stopping=True, random_state=seed)
        else:
            model = MLPClassifier((HIDDEN_UNITS,), max_iter=epochs, random_state=seed)
        with warnings.catch_warnings():  # all `epochs` run, as asked
            warnings.simplefilter("ignore", ConvergenceWarning)
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
    class absent from training can never win."""
    out_w = np.zeros((weights.shape[0], count), np.float32)
    out_b = np.full(count, -1e9, np.float32)
    if len(fitted) == 2:  # one logit, of the second class: softmax([0, z]) is sigmoid(z)
        out_b[fitted[0]] = 0.0
        out_w[:, fitted[1]], out_b[fitted[1]] = weights[:, 0], bias[0]
    else:
        out_w[:, fitted], out_b[fitted] = weights, bias
    return out_w, out_b


def trusted_classes(counts: dict[str, int], kind: TaggedLabel, min_products: int) -> list[str]:
    """The labels a tagger learns: those with `min_products` products, when there are
    MIN_CLASSES of them and they cover MIN_COVERAGE of the labelled products; else
    TooLittleData, saying which --tagger-min-products would do."""
    labelled = sum(counts.values())

    def kept(n: int) -> list[str]:
        return sorted(c for c, count in counts.items() if count >= n)

    def trusted(n: int) -> bool:
        classes = kept(n)
        covered = sum(counts[c] for c in classes)
        return len(classes) >= MIN_CLASSES and labelled and covered / labelled >= MIN_COVERAGE

    if trusted(min_products):
        return kept(min_products)
    classes = kept(min_products)
    covered = sum(counts[c] for c in classes) / labelled if labelled else 0.0
    reason = (
        f"{len(classes)} {kind.label} labels have {min_products}+ products"
        + (f" ({', '.join(classes[:4])}{', ...' if len(classes) > 4 else ''})" if classes else "")
        + f", covering {covered:.0%} of the {labelled:,} labelled products; a tagger gives every "
        f"product one of its labels, so they must cover {MIN_COVERAGE:.0%}"
    )
    workable = [n for n in range(min_products - 1, 4, -1) if trusted(n)]
    if workable:
        reason += f": `--tagger-min-products {workable[0]}` would train it"
    else:
        reason += " (too few labelled products even at --tagger-min-products 5)"
    raise TooLittleData(reason)


def label_tagger_advice(store: VectorStore, collection: str, kind: TaggedLabel) -> str:
    """Why a collection has no `kind` tagger, and what would give it one."""
    if kind == COLOUR and COLOUR_VECTOR not in store.vector_sizes(collection):
        return "it needs colour vectors (ingest without --no-colour)"
    counts: dict[str, int] = {}
    for point in store.iter_points(collection):
        label = (point.payload or {}).get(kind.label)
        if label:
            counts[label] = counts.get(label, 0) + 1
    try:
        trusted_classes(counts, kind, MIN_PRODUCTS)
    except TooLittleData as exc:
        return f"the catalog's labels are too few for one: {exc}"
    return "`searchctl tag` trains one"


def train_label_tagger(
    store: VectorStore,
    collection: str,
    kind: TaggedLabel,
    inputs: Inputs,
    test_ids: Collection[int] | None = None,
    seed: int = 0,
    min_products: int = MIN_PRODUCTS,
    shoppers: ShopperSet | None = None,
) -> LabelTagger:
    """Fit on every product but `test_ids` (the classifier's test products, so that the audit
    knows which labels it never saw), measure on those; without them, on a seeded stratified
    split. With `shoppers`, also on its shopper photos of the products fitted on (labelled
    as their product). TooLittleData when the catalog's labels are too few to trust
    (trusted_classes)."""
    t0 = time.perf_counter()
    names = [name for name, _ in inputs]
    ids, payloads = _labelled(store, collection, kind)
    labels = [p.get(kind.label) for p in payloads]
    counts: dict[str, int] = {}
    for label in labels:
        if label:
            counts[label] = counts.get(label, 0) + 1
    classes = trusted_classes(counts, kind, min_products)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(label, -1) for label in labels])
    if test_ids is None:
        split = stratified_split(payloads, seed)
        train, test = np.concatenate([split.train, split.val]), split.test
    else:
        is_test = np.isin(np.array(ids, dtype=np.int64), np.array(list(test_ids), np.int64))
        train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    train, test = train[y[train] >= 0], test[y[test] >= 0]
    rng = np.random.default_rng(seed)
    train, test = _at_most(train, TRAIN_LIMIT, rng), _at_most(test, TEST_LIMIT, rng)
    train, vectors = _rows_with_vectors(store, collection, names, ids, train)
    x, y_train = tagger_input(vectors, inputs), y[train]
    del vectors
    extra = _shopper_rows(shoppers, names, {ids[r]: y[r] for r in train})
    if extra is not None:
        x = np.vstack([x, tagger_input(extra[0], inputs)])
        y_train = np.concatenate([y_train, extra[1]])
    model, layers = _fit(x, y_train, seed, kind.epochs)
    del x
    layers[-1] = _all_classes(*layers[-1], model.classes_, len(classes))
    tagger = LabelTagger(kind, classes, layers, inputs, {})
    accuracy = None
    test, vectors = _rows_with_vectors(store, collection, names, ids, test)
    if len(test):
        predicted = tagger.probs(vectors).argmax(axis=1)
        accuracy = round(float((predicted == y[test]).mean()), 4)
    tagger.record = {
        "test_accuracy": accuracy,
        "test_products": int(len(test)),
        "trained_on": int(len(train)),
        "shopper_photos": 0 if extra is None else int(len(extra[1])),
        "model": "mlp" if len(layers) > 1 else "logistic regression",
        "epochs": kind.epochs,
        "recipe": RECIPE,
        "seed": seed,  # the split's without test_ids, and the MLP's initial weights
        "test_ids": [ids[r] for r in test],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return tagger


def _drop_tagger(store: VectorStore, collection: str, directory: Path, kind: TaggedLabel) -> None:
    """A tagger the catalog no longer supports goes, and so do the tags it gave: a stale
    prediction must not stay in payloads as if current."""
    import shutil

    if not directory.exists():
        return
    shutil.rmtree(directory)
    fields = (pred_field(kind.tag), conf_field(kind.tag))
    tagged = [p.id for p in store.iter_points(collection) if (p.payload or {}).get(fields[0])]
    if tagged:
        store.set_payloads(collection, {pid: dict.fromkeys(fields) for pid in tagged})


def _mark_tagged_all(directory: Path, kind: TaggedLabel, done: bool) -> None:
    """Record whether every point carries the saved tagger's tags."""
    path = directory / f"{kind.name}.json"
    record = json.loads(path.read_text())
    if record.get(TAGGED_ALL) != done:
        write_json_atomic(path, {**record, TAGGED_ALL: done})


def ensure_label_tags(
    store: VectorStore,
    collection: str,
    data_dir: Path,
    backbone: str,
    kind: TaggedLabel,
    *,
    retag: bool = False,
    min_products: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> StageReport:
    """Train the `kind` tagger if the collection has none, or one of other inputs (another
    backbone; tuned vectors made by another model), or of an older RECIPE, and tag every
    point; else tag the points without its predicted tag (every point if `retag`). Skipped,
    with the reason, without the vectors or the labels to learn from."""
    t0 = time.perf_counter()
    what = f"No predicted {kind.label} over all its classes"
    tuned_mark = store.get_metadata(collection).get(CURRENT_KEY)
    inputs = tagger_inputs(kind, store.vector_sizes(collection), backbone, bool(tuned_mark))
    if inputs is None:
        return skipped(kind.stage, "no colour vectors (ingest without --no-colour)", what)
    directory = label_tagger_dir(data_dir, collection, kind)
    tagger = LabelTagger.load(directory, kind)
    # The set's record says whether it teaches this tagger; its arrays are read to train only.
    shoppers = read_shopper_record(data_dir, collection) if kind.learns_shopper_photos else None
    if shoppers is not None and not all(v in shoppers["vectors"] for v, _ in inputs):
        shoppers = None  # a set without the tagger's inputs (a tuned vector) teaches it nothing
    shopper_mark = shoppers["mark"] if shoppers is not None else None
    if min_products is None:  # what the tagger was trained with, else the default
        min_products = tagger.record.get("min_products", MIN_PRODUCTS) if tagger else MIN_PRODUCTS
    trained = (
        tagger is None
        or tagger.inputs != inputs
        or tagger.record.get("recipe") != RECIPE
        or not tagger.reads_current(tuned_mark)
        or tagger.record.get("min_products", MIN_PRODUCTS) != min_products
        or tagger.record.get("shopper_mark") != shopper_mark
        or tagger.record.get("epochs") != kind.epochs
    )
    if trained:
        classifier = read_record(tagger_dir(data_dir, collection))
        test_ids = classifier.test_ids if classifier else None
        try:
            tagger = train_label_tagger(
                store, collection, kind, inputs, test_ids, min_products=min_products,
                shoppers=load_shopper_set(data_dir, collection) if shopper_mark else None,
            )  # fmt: skip
        except TooLittleData as exc:
            _drop_tagger(store, collection, directory, kind)
            return skipped(kind.stage, str(exc), what)
        tagger.record["min_products"] = min_products
        tagger.record["shopper_mark"] = shopper_mark
        if TUNED_VECTOR in tagger.vectors:
            tagger.record["tuned_model"] = tuned_mark
        tagger.record[TAGGED_ALL] = False  # until every point carries its tags
        tagger.save(directory)
    # A run killed while it re-tagged left some points with the old tagger's tags.
    everyone = trained or retag or not tagger.record.get(TAGGED_ALL, True)
    if everyone:
        _mark_tagged_all(directory, kind, False)
    field = pred_field(kind.tag)
    todo = [
        p.id
        for p in store.iter_points(collection)
        if everyone or (p.payload or {}).get(field) is None
    ]
    progress.phase(kind.stage.replace("_", " "), len(todo))
    store.create_index(collection, field, KEYWORD_INDEX)
    tagged = 0
    for start in range(0, len(todo), PAGE):
        ids, _, vectors = _points(store, collection, tagger.vectors, todo[start : start + PAGE])
        if ids:
            store.set_payloads(collection, dict(zip(ids, tagger.tags(vectors))))
            tagged += len(ids)
        progress.advance(len(todo[start : start + PAGE]))
    if everyone:
        _mark_tagged_all(directory, kind, True)
    accuracy = tagger.record.get("test_accuracy")
    details = {"tagged": tagged, "test_accuracy": accuracy}
    details["seconds"] = round(time.perf_counter() - t0, 1)
    if trained:
        held = f" (tagger trained: test accuracy {accuracy:.3f})" if accuracy is not None else ""
        summary = f"Predicted {kind.label} of {tagged:,} products{held}."
        return StageReport(kind.stage, Action.TRAINED, summary, details)
    if todo:
        summary = f"Predicted {kind.label} of {tagged:,} products."
        return StageReport(kind.stage, Action.TAGGED, summary, details)
    summary = f"Every product has its predicted {kind.label} over all its classes."
    return StageReport(kind.stage, Action.UP_TO_DATE, summary, details)
