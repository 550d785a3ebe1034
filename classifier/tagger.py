"""A trained tagger on disk: the Keras model plus a JSON record of what it was trained on.

Saved under <data_dir>/models/<collection>/classifier/. The model file has a unique name and
the record, written last and atomically, names it: an interrupted save leaves the previous
tagger in place, never a record pointing at a half-written model.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from classifier.schemes import SchemeClasses
from embedder.files import drop_other_models, models_dir, save_model_file, write_json_atomic
from qdrant.base import unit_rows

RECORD_FILE = "classifier.json"


class ClassifierMissing(Exception):
    """No tagger has been trained for the collection."""


def tagger_dir(data_dir: Path, collection: str) -> Path:
    return models_dir(data_dir, collection) / "classifier"


@dataclass
class TaggerRecord:
    kind: str
    embedder: dict  # the collection's embedder record: features must come from the same one
    input_shape: list[int]
    schemes: list[SchemeClasses]
    min_class_size: int
    seed: int
    model_file: str = ""
    split: dict[str, int] = field(default_factory=dict)
    test_ids: list[int] = field(default_factory=list)
    trained_on: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    # A finetune classifier's tags voted by neighbours (classifier.neighbours), measured on
    # the same test products once every tuned vector is made (ingest.tuned).
    neighbour_metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    created: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data["schemes"] = [sc.to_record() for sc in self.schemes]
        return data

    @classmethod
    def from_json(cls, data: dict) -> TaggerRecord:
        if data.get("kind") == "finetune" and "cut_layer" in data:
            raise ClassifierMissing(
                "the classifier was fine-tuned by an older searchctl (top blocks on feature "
                "maps, no longer supported): retrain it with `searchctl train classifier`"
            )
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["schemes"] = [SchemeClasses.from_record(r) for r in data["schemes"]]
        return cls(**data)


def read_record(directory: Path) -> TaggerRecord | None:
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        return None
    return TaggerRecord.from_json(json.loads(path.read_text()))


def save_tagger(model, record: TaggerRecord, directory: Path) -> Path:
    """Write the model under a fresh name, then the record naming it; drop older models."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record.model_file = save_model_file(model, directory, "tagger")
    record.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(directory / RECORD_FILE, record.to_json())
    drop_other_models(directory, "tagger", record.model_file)
    return directory / RECORD_FILE


class Tagger:
    """A loaded tagger: features in, one probability matrix per scheme out."""

    def __init__(self, directory: Path):
        record = read_record(directory)
        if record is None:
            raise ClassifierMissing(
                f"no classifier in {directory}: run `searchctl train classifier` first"
            )
        from classifier.model import load_tagger_model

        self.record = record
        self.model = load_tagger_model(Path(directory) / record.model_file)
        self._features = None
        self._graphs: dict = {}
        self._head: VectorsHead | None | bool = None  # False: the model is not build_head's

    def predict(self, features) -> list[np.ndarray]:
        """Probabilities of features: an array, or rows on disk (embedder.decoded.RowFile)."""
        if not isinstance(features, np.ndarray) and len(features) > PREDICT_BATCH:
            return predict_probs(self.model, features, self.record.schemes)
        features = np.asarray(features)
        if features.dtype == np.uint8 and len(features) <= PHOTO_BATCH:  # query photos
            out = self._graph("predict", self.model)(features)
            return [np.asarray(out[sc.scheme]) for sc in self.record.schemes]
        if self.record.kind == "vectors" and len(features) <= PREDICT_BATCH:  # query vectors
            features = features.astype(np.float32, copy=False)
            if self._head is None:
                self._head = VectorsHead.of(self.model) or False
            if self._head:
                return self._head.probs(features, [sc.scheme for sc in self.record.schemes])
            # A traced call: the eager one spent 6 ms of Python (holding the GIL) a query.
            out = self._graph("predict_vectors", self.model, "float32")(features)
            return [np.asarray(out[sc.scheme]) for sc in self.record.schemes]
        return predict_probs(self.model, features, self.record.schemes)

    def embed(self, photos: np.ndarray) -> np.ndarray:
        """A `finetune` tagger's backbone features of uint8 photos (the `tuned` vector)."""
        if self.record.kind != "finetune":
            raise ValueError(f"a {self.record.kind} classifier has no tuned vector")
        if self._features is None:
            import keras

            self._features = keras.Model(self.model.input, self.model.get_layer("dropout").input)
        photos = np.asarray(photos, np.uint8)
        if len(photos) <= PHOTO_BATCH:  # a query: a traced graph, not predict()'s setup
            return np.asarray(self._graph("embed", self._features)(photos), np.float32)
        return self._features.predict(photos, batch_size=PHOTO_BATCH, verbose=0)

    def embed_catalog(self, photos: np.ndarray) -> np.ndarray:
        """The tuned vector stored for catalog photos: the unit mean of the features of each
        photo, its centre enlarged CATALOG_ZOOM times, and both their mirror images (three
        passes more per catalog photo, none per query). The vote's test accuracy and
        leave-one-out search gained on every scheme here (docs/classifier.md)."""
        from embedder.images import zoom_in

        photos = np.asarray(photos, np.uint8)
        views = [photos, zoom_in(photos, CATALOG_ZOOM)]
        views += [view[:, :, ::-1] for view in views]
        return unit_rows(sum(unit_rows(self.embed(view)) for view in views))

    def predict_and_embed(self, photos: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """A `finetune` tagger's class probabilities (one matrix per scheme) and features (the
        tuned vector) of up to PHOTO_BATCH uint8 photos, from one pass through the network."""
        if self.record.kind != "finetune":
            raise ValueError(f"a {self.record.kind} classifier has no tuned vector")
        if "both" not in self._graphs:
            import keras

            outputs = {"features": self.model.get_layer("dropout").input, **self.model.output}
            self._graph("both", keras.Model(self.model.input, outputs))
        out = self._graphs["both"](np.asarray(photos, np.uint8))
        probs = [np.asarray(out[sc.scheme]) for sc in self.record.schemes]
        return probs, np.asarray(out["features"], np.float32)

    def _graph(self, name: str, model, dtype: str = "uint8"):
        """`model` as a traced TensorFlow function of inputs of the record's shape (uint8
        photos, or float32 vectors), made once: an eager call of the whole network took about
        100 ms a photo on the CPU."""
        if name not in self._graphs:
            import tensorflow as tf

            signature = [tf.TensorSpec([None, *self.record.input_shape], tf.as_dtype(dtype))]
            self._graphs[name] = tf.function(
                lambda x: model(x, training=False), input_signature=signature
            )
        return self._graphs[name]


@dataclass
class VectorsHead:
    """A `vectors` network (classifier.model.build_head) as numpy arrays, for a query's few
    rows. Its traced TensorFlow call held the GIL for 0.5 ms of a 60x80 photo's search,
    9 % of the time a loaded server held it (py-spy --gil); this holds it for 0.05 ms."""

    scale: float
    hidden: tuple[np.ndarray, np.ndarray]
    outputs: dict[str, tuple[np.ndarray, np.ndarray]]  # scheme -> softmax layer

    @classmethod
    def of(cls, model) -> VectorsHead | None:
        """The arrays of `model`, or None if it is not build_head's shape."""
        layers = {layer.name: layer for layer in model.layers}
        kinds = {name: type(layer).__name__ for name, layer in layers.items()}
        outputs = model.output if isinstance(model.output, dict) else {}
        expected = {"features": "InputLayer", "scale": "Rescaling", "hidden": "Dense",
                    "dropout": "Dropout", **{name: "Dense" for name in outputs}}  # fmt: skip
        if not outputs or kinds != expected or float(layers["scale"].offset) != 0.0:
            return None
        activations = {name: layers[name].activation.__name__ for name in ["hidden", *outputs]}
        if activations != {"hidden": "relu", **{name: "softmax" for name in outputs}}:
            return None

        def arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
            kernel, bias = layers[name].get_weights()
            return kernel.astype(np.float32), bias.astype(np.float32)

        return cls(float(layers["scale"].scale), arrays("hidden"),
                   {name: arrays(name) for name in outputs})  # fmt: skip

    def probs(self, features: np.ndarray, schemes: list[str]) -> list[np.ndarray]:
        """One probability matrix per scheme of float32 `features` rows."""
        kernel, bias = self.hidden
        hidden = np.maximum((features * np.float32(self.scale)) @ kernel + bias, 0.0)
        out = []
        for scheme in schemes:
            kernel, bias = self.outputs[scheme]
            out.append(softmax_rows(hidden @ kernel + bias))
        return out


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Each row of logits as probabilities (shifted by its maximum: no overflow)."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


PREDICT_BATCH = 512  # stored vectors per model call
PREDICT_CHUNK = 4096  # rows read from disk at a time (photos: 59 MB at 80x60)
# Photos per call through the whole network: 512 peaked at 11 GB on the CPU, 128 at 2.8 GB.
PHOTO_BATCH = 64
# embed_catalog's second view: the photo's centre, a crop of 1/CATALOG_ZOOM of its sides
# (1.2 and a zoom out voted worse, docs/classifier.md).
CATALOG_ZOOM = 1.1


def predict_probs(model, features: np.ndarray, schemes) -> list[np.ndarray]:
    """One probability matrix per scheme, in the order of `schemes`. `features`: vectors
    (float) or photos (uint8, kept so: 44k photos as float32 would take 2.5 GB), in an array
    or in rows on disk (embedder.decoded.RowFile, read PREDICT_CHUNK rows at a time)."""
    if not isinstance(features, np.ndarray) and len(features) > PREDICT_CHUNK:
        chunks = [predict_probs(model, features[i : i + PREDICT_CHUNK], schemes)
                  for i in range(0, len(features), PREDICT_CHUNK)]  # fmt: skip
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(schemes))]
    features = np.asarray(features)
    batch = PHOTO_BATCH if features.dtype == np.uint8 else PREDICT_BATCH
    if features.dtype != np.uint8:
        features = features.astype(np.float32, copy=False)
    if len(features) <= batch:  # a query: a direct call skips predict()'s ~50 ms setup
        out = model(features, training=False)
    else:
        out = model.predict(features, batch_size=batch, verbose=0)
    return [np.asarray(out[sc.scheme]) for sc in schemes]
