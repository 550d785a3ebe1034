"""The `autoencoder` named vector of a collection: train the model on the collection's images,
embed every product with it, and never mix vectors of two models.

Each point records in its payload which model made its autoencoder vector (`ae_model`), and
the collection's metadata names the current model and whether every point has its vector
(`complete`). A retrain marks the collection incomplete, then re-embeds; an interrupted
re-embed is finished by the next `ingest` or `train autoencoder`, and until then searches on
the vector are refused.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from embedder.autoencoder import (
    DEFAULT_ARCH,
    RECORD_KEY,
    VECTOR_NAME,
    AutoencoderConfig,
    AutoencoderRecord,
    autoencoder_dir,
    get_config,
    read_record,
)
from embedder.collection import catalog_root, collection_cutout, collection_images, write_vectors
from embedder.decoded import DecodedPhotos, Size
from embedder.images import load_images
from qdrant.base import VectorStore
from searchctl.reporting import (
    NO_PROGRESS,
    Action,
    Progress,
    StageReport,
    TooLittleData,
    skipped,
)

MODEL_FIELD = "ae_model"  # in each point's payload
STAGE = "autoencoder"
MIN_TRAIN_IMAGES = 20
# 3 epochs, not 8: on the shared catalog the vector's leave-one-out label match rates moved
# by at most 0.0045 (baseColour) for a third of the training time, which kept the main
# job from its 15-minute budget on a 2-core CPU; 2 epochs lost 0.002-0.004 of every shape
# field (docs/embedders.md, "Epochs").
DEFAULT_EPOCHS = 3


def short_id(model_id: str) -> str:
    return model_id.split(":")[-1][:16]


def photo_size(config: AutoencoderConfig) -> Size:
    return config.input_height, config.input_width, config.fit


def train_for_collection(
    store: VectorStore,
    collection: str,
    data_dir: Path,
    photos: DecodedPhotos,
    *,
    arch: str = DEFAULT_ARCH,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    progress: Progress = NO_PROGRESS,
    batch_size: int = 1024,
) -> AutoencoderRecord:
    """Train on every photo of the collection, read from `photos` a batch at a time."""
    from embedder.autoencoder import train

    config = get_config(arch)
    ids, paths = collection_images(store, collection)
    progress.phase("autoencoder photos", len(ids))
    good_ids: list[int] = []
    for start in range(0, len(ids), batch_size):  # photos no stage decoded yet: decoded now
        chunk = slice(start, start + batch_size)
        good = photos.ensure(ids[chunk], paths[chunk], photo_size(config), progress)
        good_ids += [ids[start + i] for i in good]
    if len(good_ids) < MIN_TRAIN_IMAGES:
        raise TooLittleData(
            f"too few images to train an autoencoder: {len(good_ids)} (at least {MIN_TRAIN_IMAGES})"
        )
    trained_on = {
        "collection": collection,
        "catalog": str(catalog_root(store, collection)),
        "images": len(good_ids),
    }
    return train(
        photos.rows(good_ids, photo_size(config)),
        config,
        autoencoder_dir(data_dir, collection),
        trained_on=trained_on,
        epochs=epochs,
        seed=seed,
        progress=progress,
    )


def embed_collection(
    store: VectorStore,
    collection: str,
    data_dir: Path,
    photos: DecodedPhotos,
    *,
    progress: Progress = NO_PROGRESS,
    batch_size: int = 512,
) -> dict:
    """Give every point the current model's autoencoder vector (only those that lack it)."""
    from embedder.autoencoder import AutoencoderEmbedder

    t0 = time.perf_counter()
    directory = autoencoder_dir(data_dir, collection)
    model = AutoencoderEmbedder(directory)
    current = short_id(model.record.model_id)
    metadata = store.get_metadata(collection)
    metadata[RECORD_KEY] = {
        "model_id": model.record.model_id,
        "arch": model.config.arch,
        "dim": model.config.dim,
        "complete": False,
    }
    store.add_vector(collection, VECTOR_NAME, model.config.dim)
    store.set_metadata(collection, metadata)
    made_by = {p.id: (p.payload or {}).get(MODEL_FIELD) for p in store.iter_points(collection)}
    todo = [pid for pid, model_id in made_by.items() if model_id != current]
    progress.phase("autoencoder embed", len(todo))
    bad: list[tuple[int, str]] = []
    for start in range(0, len(todo), batch_size):
        chunk_ids, paths = collection_images(store, collection, todo[start : start + batch_size])
        pixels, good, problems = photos.load(chunk_ids, paths, photo_size(model.config))
        ids = [chunk_ids[i] for i in good]
        bad += [(chunk_ids[i], why) for i, why in problems]
        if ids:
            vectors = model.embed(pixels)
            write_vectors(store, collection, VECTOR_NAME, ids, vectors, {MODEL_FIELD: current})
        progress.advance(len(chunk_ids))
    # A point whose image fails now is only a problem if it still holds an older model's
    # vector: one that never had a vector just does not show up in autoencoder searches.
    metadata[RECORD_KEY]["complete"] = not any(made_by[pid] for pid, _ in bad)
    store.set_metadata(collection, metadata)
    return {
        "embedded": len(todo) - len(bad),
        "bad_images": [{"id": i, "reason": r} for i, r in bad],
        "model_id": model.record.model_id,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def ensure_autoencoder(
    store: VectorStore,
    collection: str,
    data_dir: Path,
    photos: DecodedPhotos,
    *,
    arch: str = DEFAULT_ARCH,
    epochs: int = DEFAULT_EPOCHS,
    retrain: bool = False,
    seed: int = 0,
    progress: Progress = NO_PROGRESS,
) -> StageReport:
    """Train the autoencoder if there is none (or `retrain`), then embed what lacks its vector."""
    directory = autoencoder_dir(data_dir, collection)
    record = read_record(directory)
    trained = {}
    if record is None or retrain:
        try:
            record = train_for_collection(
                store,
                collection,
                data_dir,
                photos,
                arch=arch if retrain or record is None else record.autoencoder_config.arch,
                epochs=epochs,
                seed=seed,
                progress=progress,
            )
        except TooLittleData as exc:
            return skipped(STAGE, str(exc), "Autoencoder not trained")
        trained = {
            "arch": record.autoencoder_config.arch,
            "epochs": record.epochs,
            "best_val_loss": round(record.best_val_loss, 5),
            "train_seconds": record.seconds.get("train"),
        }
    embedded = embed_collection(store, collection, data_dir, photos, progress=progress)
    bad = [(b["id"], b["reason"]) for b in embedded.pop("bad_images")]
    details = {**trained, **embedded}
    if trained:
        action = Action.TRAINED
        summary = (
            f"Autoencoder '{trained['arch']}' trained: {trained['epochs']} epochs, best "
            f"validation loss {trained['best_val_loss']}, {trained['train_seconds']} s."
        )
    elif embedded["embedded"]:
        action, summary = Action.EMBEDDED, "Autoencoder vectors added."
    else:
        action, summary = Action.UP_TO_DATE, "Every product has its autoencoder vector."
    if embedded["embedded"]:
        summary += f" Embedded {embedded['embedded']:,} products in {embedded['seconds']} s."
    return StageReport(STAGE, action, summary, details, bad)


def reconstruction_sheet(
    store: VectorStore, collection: str, data_dir: Path, path: Path, n: int = 8, seed: int = 0
) -> Path:
    """Contact sheet: n seeded random catalog photos above, their reconstructions below."""
    from embedder.autoencoder import AutoencoderEmbedder
    from embedder.contact_sheet import Tile, write_contact_sheet

    model = AutoencoderEmbedder(autoencoder_dir(data_dir, collection))
    all_ids = sorted(store.ids(collection))
    rng = np.random.default_rng(seed)
    picked = sorted(int(i) for i in rng.choice(all_ids, size=min(n, len(all_ids)), replace=False))
    ids, paths = collection_images(store, collection, picked)
    config = model.config
    cutout = collection_cutout(store, collection)
    images, good, _ = load_images(
        paths, config.input_height, config.input_width, config.fit, cutout=cutout
    )
    recon = model.reconstruct(images)
    top = [Tile(images[i], [f"id {ids[g]}", "original"]) for i, g in enumerate(good)]
    bottom = [Tile(recon[i], [f"id {ids[g]}", "reconstruction"]) for i, g in enumerate(good)]
    return write_contact_sheet(top + bottom, path, columns=max(1, len(top)))
