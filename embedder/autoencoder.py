"""A convolutional autoencoder trained on the catalog: its encoder gives the `autoencoder`
named vector (the flat bottleneck, or with `embedding="multiscale"` the first stage beside it).

Two architectures, both selectable so the comparison can be rerun (bench/autoencoder_compare.py):
- `paper`: the paper's model. 60x60 input (the 60x80 photos squashed), conv 16-8-8 with
  max-pooling down to 8x8x8 = 512 floats, mirrored decoder, sigmoid output, binary
  cross-entropy, Adam.
- `default`: ours, chosen by top-5 label match rates on a sample (docs/embedders.md has both
  tables).

Training keeps a checkpoint after every epoch under the model directory; an interrupted run
resumes from it, and the finished model is written under a fresh name before the record that
names it (atomic), so a kill never leaves a half-written model in use.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embedder.files import drop_other_models, models_dir, save_model_file, write_json_atomic
from embedder.spec import sha256_file
from qdrant.base import StoreError, VectorStore
from searchctl.reporting import NO_PROGRESS, Progress

VECTOR_NAME = "autoencoder"
RECORD_KEY = "autoencoder"  # in the collection metadata: the model of its vectors
RECORD_FILE = "autoencoder.json"
CHECKPOINT_FILE = "checkpoint.keras"
CHECKPOINT_STATE = "checkpoint.json"
PATIENCE = 2


@dataclass(frozen=True)
class AutoencoderConfig:
    arch: str
    input_height: int
    input_width: int
    fit: str  # how photos are brought to the input size: "squash" or "letterbox"
    filters: tuple[int, ...]  # encoder conv filters, one max-pool after each
    batch_norm: bool = False
    loss: str = "bce"  # "bce" or "mse" on [0, 1] pixels
    noise: float = 0.0  # std of Gaussian input noise while training (denoising); 0 = off
    linear_code: bool = False  # last encoder conv without ReLU/BN: a signed code for cosine
    # "opponent": learn and reconstruct in luminance + two colour-difference channels, chroma
    # weighted up, so the code cannot drop colour (in RGB, errors are mostly luminance).
    colour_space: str = "rgb"
    # "code": the flat bottleneck (the paper). "multiscale": the first encoder stage's maps,
    # average-pooled to the bottleneck's grid, beside the bottleneck; each part centred on the
    # catalog mean and scaled to unit length, so cosine weighs them equally. The first stage
    # keeps colour and fine texture that the bottleneck trades away for shape.
    embedding: str = "code"
    learning_rate: float = 1e-3
    batch_size: int = 128

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        h, w = self.input_height, self.input_width
        for _ in self.filters:
            h, w = -(-h // 2), -(-w // 2)  # "same" pooling rounds up
        return h, w, self.filters[-1]

    @property
    def dim(self) -> int:
        h, w, c = self.bottleneck_shape
        return h * w * (c + (self.filters[0] if self.embedding == "multiscale" else 0))

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> AutoencoderConfig:
        return cls(**{**record, "filters": tuple(record["filters"])})


ARCHS = {
    "paper": AutoencoderConfig("paper", 60, 60, "squash", (16, 8, 8)),
    # Native 3:4 aspect (no squashing), a 10x8x16 bottleneck with a signed (linear) code, MSE
    # in a luminance + colour-difference space. Chosen over the other candidates of
    # bench/autoencoder_compare.py on a 10k-product sample; on the whole catalog it keeps colour
    # slightly better than the paper's model but is the weaker shape vector (docs/embedders.md
    # tables).
    "default": AutoencoderConfig(
        "default",
        80,
        60,
        "letterbox",
        (16, 16, 16),
        loss="mse",
        linear_code=True,
        colour_space="opponent",
        embedding="multiscale",
    ),
}
DEFAULT_ARCH = "default"
# Photos a model call embeds at once outside training: every layer's activations of a batch
# are held together (80x60x16 floats a photo in the first ones), and batches of 1,024 and
# 512 made the main job's anonymous-memory peak (bench/peak_memory.py).
MODEL_BATCH = 128


def get_config(arch: str) -> AutoencoderConfig:
    if arch not in ARCHS:
        raise ValueError(f"unknown autoencoder architecture {arch!r} (have: {', '.join(ARCHS)})")
    return ARCHS[arch]


def build(config: AutoencoderConfig):
    """The autoencoder: uint8 HxWx3 in, reconstruction in [0, 1] (or opponent space) out."""
    import keras
    from keras import layers

    inp = keras.Input((config.input_height, config.input_width, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255.0, name="to_unit")(inp)
    if config.colour_space == "opponent":  # a fixed 1x1 convolution: saves and loads as is
        to_opp = layers.Conv2D(3, 1, use_bias=False, trainable=False, name="to_opponent")
        x = to_opp(x)
        to_opp.set_weights([np.asarray(OPPONENT, np.float32).T[None, None]])
    if config.noise:
        x = layers.GaussianNoise(config.noise, name="denoise")(x)
    last = len(config.filters) - 1
    for i, f in enumerate(config.filters):
        linear = config.linear_code and i == last
        act = None if linear else "relu"
        x = layers.Conv2D(f, 3, padding="same", activation=act, name=f"enc_conv{i}")(x)
        if config.batch_norm and not linear:
            x = layers.BatchNormalization(name=f"enc_bn{i}")(x)
        pool = layers.AveragePooling2D if linear else layers.MaxPooling2D
        x = pool(2, padding="same", name=f"enc_pool{i}")(x)
    for i, f in enumerate(reversed(config.filters)):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"dec_conv{i}")(x)
        if config.batch_norm:
            x = layers.BatchNormalization(name=f"dec_bn{i}")(x)
        x = layers.UpSampling2D(2, name=f"dec_up{i}")(x)
    dh = int(x.shape[1]) - config.input_height
    dw = int(x.shape[2]) - config.input_width
    if dh or dw:
        x = layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)), name="crop")(x)
    final = "sigmoid" if config.colour_space == "rgb" else None
    out = layers.Conv2D(3, 3, padding="same", activation=final, name="reconstruction")(x)
    return keras.Model(inp, out, name=f"autoencoder_{config.arch}")


def encoder_parts(autoencoder, config: AutoencoderConfig):
    """Keras model: uint8 photos -> the embedding's parts, flat and not yet centred."""
    import keras
    from keras import layers

    last = len(config.filters) - 1
    code = layers.Flatten()(autoencoder.get_layer(f"enc_pool{last}").output)
    if config.embedding == "code":
        return keras.Model(autoencoder.input, [code])
    first = autoencoder.get_layer("enc_pool0").output
    first = layers.AveragePooling2D(2**last, padding="same")(first)  # to the code's grid
    return keras.Model(autoencoder.input, [layers.Flatten()(first), code])


def join_parts(parts: list[np.ndarray], centre: list[list[float]] | None) -> np.ndarray:
    """The embedding from its parts: the code as is, or each part centred and unit length."""
    if centre is None:
        return np.asarray(parts[0], np.float32)
    joined = []
    for part, mean in zip(parts, centre, strict=True):
        x = np.asarray(part, np.float32) - np.asarray(mean, np.float32)
        joined.append(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    return np.concatenate(joined, axis=1)


def part_means(
    autoencoder, config: AutoencoderConfig, images, batch_size: int = MODEL_BATCH
) -> list[list[float]] | None:
    """The catalog mean of each part ("multiscale" embeddings centre on it), or None."""
    if config.embedding == "code":
        return None
    parts = encoder_parts(autoencoder, config)
    sums: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        out = parts(np.asarray(images[start : start + batch_size], np.uint8), training=False)
        batch = [np.asarray(o, np.float64).sum(axis=0) for o in out]
        sums = batch if not sums else [a + b for a, b in zip(sums, batch, strict=True)]
    return [[round(float(v), 6) for v in s / len(images)] for s in sums]


# Rows: luminance, red-green, yellow-blue; each row spans a range of 1.
OPPONENT = ((0.299, 0.587, 0.114), (0.5, -0.5, 0.0), (0.25, 0.25, -0.5))


def to_opponent(x):
    import keras

    return keras.ops.matmul(x, keras.ops.transpose(keras.ops.convert_to_tensor(OPPONENT)))


def _loss_fn(kind: str, colour_space: str = "rgb"):
    import keras

    name = f"pixel_{kind}" + ("" if colour_space == "rgb" else f"_{colour_space}")

    @keras.saving.register_keras_serializable(package="searchctl", name=name)
    def pixel_loss(y_true, y_pred):
        target = keras.ops.cast(y_true, "float32") / 255.0
        if colour_space == "opponent":
            target = to_opponent(target)
        if kind == "bce":
            return keras.losses.binary_crossentropy(target, y_pred)
        return keras.ops.mean(keras.ops.square(target - y_pred), axis=-1)

    return pixel_loss


@dataclass
class AutoencoderRecord:
    config: dict
    model_file: str
    model_id: str  # sha256 of the model file: stored vectors name the model they came from
    seed: int
    trained_on: dict
    epochs: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    created: str = ""
    centre: list[list[float]] | None = None  # per-part catalog means ("multiscale")

    @property
    def autoencoder_config(self) -> AutoencoderConfig:
        return AutoencoderConfig.from_record(self.config)


def read_record(directory: Path) -> AutoencoderRecord | None:
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        return None
    return AutoencoderRecord(**json.loads(path.read_text()))


def _batches(images, rows: np.ndarray, batch_size: int):
    """(x, x) training batches of `images` at `rows`, in that order, each read when Keras
    asks for it: memory holds a batch, not the catalog."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return -(-len(rows) // batch_size)

        def __getitem__(self, i: int):
            x = np.asarray(images[np.sort(rows[i * batch_size : (i + 1) * batch_size])], np.uint8)
            return x, x

    return Batches()


def train(
    images,
    config: AutoencoderConfig,
    directory: Path,
    *,
    trained_on: dict,
    epochs: int = 20,
    seed: int = 0,
    val_fraction: float = 0.1,
    progress: Progress = NO_PROGRESS,
) -> AutoencoderRecord:
    """Train on uint8 images (N x H x W x 3 at the config's size: an array, or photos on disk
    such as embedder.decoded.PhotoRows) and save under `directory`.

    Validation: a seeded random `val_fraction` of the images. Early stopping on validation
    loss (patience 2), best weights kept. A checkpoint after each epoch lets a killed run
    resume where it stopped (same config, same images count and seed)."""
    import keras
    import tensorflow as tf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_val = max(1, int(round(len(images) * val_fraction)))
    val, fit_rows = np.sort(order[:n_val]), np.sort(order[n_val:])

    state_path, ckpt_path = directory / CHECKPOINT_STATE, directory / CHECKPOINT_FILE
    # JSON round trip: the saved state holds lists where the config has tuples.
    fingerprint = json.loads(
        json.dumps(
            {
                "config": config.to_record(),
                "seed": seed,
                "images": int(len(images)),
                "trained_on": trained_on,
            }
        )
    )
    state = {"epoch": 0, "best_val_loss": None, "wait": 0, "history": [], **fingerprint}
    loss = _loss_fn(config.loss, config.colour_space)
    if state_path.is_file() and ckpt_path.is_file():
        saved = json.loads(state_path.read_text())
        if all(saved.get(k) == v for k, v in fingerprint.items()):
            state = saved
    if state["epoch"]:
        model = keras.saving.load_model(ckpt_path)
    else:
        model = build(config)
        model.compile(keras.optimizers.Adam(config.learning_rate), loss=loss)
    best_path = directory / "best.weights.h5"
    started = time.perf_counter()
    for epoch in range(state["epoch"], epochs):
        # The epoch's order is a function of the seed and the epoch: a resumed run trains
        # exactly as one that was never stopped.
        epoch_order = np.random.default_rng([seed, epoch]).permutation(fit_rows)
        h = model.fit(
            _batches(images, epoch_order, config.batch_size),
            validation_data=_batches(images, val, config.batch_size),
            epochs=epoch + 1,
            initial_epoch=epoch,
            verbose=0,
        )
        logs = {k: float(v[-1]) for k, v in h.history.items()}
        state["history"].append({"epoch": epoch + 1, **logs})
        improved = state["best_val_loss"] is None or logs["val_loss"] < state["best_val_loss"]
        if improved:
            state["best_val_loss"], state["wait"] = logs["val_loss"], 0
            model.save_weights(best_path.with_name(".partial.weights.h5"))
            os.replace(best_path.with_name(".partial.weights.h5"), best_path)
        else:
            state["wait"] += 1
        state["epoch"] = epoch + 1
        partial = directory / ".partial-checkpoint.keras"
        model.save(partial)
        os.replace(partial, ckpt_path)
        write_json_atomic(state_path, state)
        progress.note(
            f"autoencoder epoch {epoch + 1}: loss {logs.get('loss', 0):.5f}, "
            f"val_loss {logs.get('val_loss', 0):.5f}"
        )
        if state["wait"] >= PATIENCE:
            break
    model.load_weights(best_path)
    trained = time.perf_counter() - started
    centre = part_means(model, config, images)
    model_file = save_model_file(model, directory, "autoencoder")
    record = AutoencoderRecord(
        config=config.to_record(),
        model_file=model_file,
        model_id=f"sha256:{sha256_file(directory / model_file)}",
        seed=seed,
        trained_on=trained_on,
        epochs=state["epoch"],
        best_val_loss=float(state["best_val_loss"]),
        history=state["history"],
        seconds={
            "train": round(trained, 1),
            "centre": round(time.perf_counter() - started - trained, 1),
        },
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        centre=centre,
    )
    write_json_atomic(directory / RECORD_FILE, asdict(record))
    for leftover in (ckpt_path, state_path, best_path):
        leftover.unlink(missing_ok=True)
    drop_other_models(directory, "autoencoder", model_file)
    return record


class AutoencoderEmbedder:
    """The saved encoder: photos at the config's size -> flat bottleneck vectors."""

    def __init__(self, directory: Path):
        import keras

        record = read_record(directory)
        if record is None:
            raise FileNotFoundError(f"no autoencoder in {directory}")
        self.record = record
        self.config = record.autoencoder_config
        _loss_fn(self.config.loss, self.config.colour_space)  # registered: the file loads
        model = keras.saving.load_model(Path(directory) / record.model_file, compile=False)
        self.autoencoder = model
        self.encoder = encoder_parts(model, self.config)
        if self.config.embedding != "code" and record.centre is None:
            raise ValueError(f"{directory / RECORD_FILE} has no part means: retrain the model")

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.uint8)
        out = []
        for start in range(0, len(images), MODEL_BATCH):
            parts = self.encoder(images[start : start + MODEL_BATCH], training=False)
            parts = parts if isinstance(parts, list | tuple) else [parts]  # one output: unwrapped
            out.append(join_parts([np.asarray(p) for p in parts], self.record.centre))
        return np.concatenate(out) if out else np.zeros((0, self.config.dim), np.float32)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        out = np.asarray(self.autoencoder(np.asarray(images, np.uint8), training=False))
        if self.config.colour_space == "opponent":
            out = out @ np.linalg.inv(np.asarray(OPPONENT)).T
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


class AutoencoderNotReady(StoreError):
    """The collection's autoencoder vectors cannot be searched (missing or mixed)."""


def autoencoder_dir(data_dir: Path, collection: str) -> Path:
    return models_dir(data_dir, collection) / "autoencoder"


def check_searchable(store: VectorStore, collection: str, data_dir: Path) -> AutoencoderRecord:
    """The model that made the collection's autoencoder vectors; refuses mixed or missing."""
    state = store.get_metadata(collection).get(RECORD_KEY)
    record = read_record(autoencoder_dir(data_dir, collection))
    if state is None or record is None:
        raise AutoencoderNotReady(
            f"collection {collection!r} has no autoencoder vectors yet: run "
            "`searchctl train autoencoder`"
        )
    if state["model_id"] != record.model_id or not state.get("complete"):
        raise AutoencoderNotReady(
            f"the autoencoder vectors of {collection!r} are not all from the current model "
            "(a retrain, an interrupted re-embed, or images that can no longer be read): run "
            "`searchctl train autoencoder` to finish re-embedding; it lists unreadable images"
        )
    return record
