"""Files that must never be seen half-written: JSON records and saved Keras models."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_model_file(model, directory: Path, prefix: str) -> str:
    """Save a Keras model under a fresh name (save_file_fresh), atomically.

    The caller then writes the record naming it, and only then calls drop_other_models: a kill
    at any point leaves the previous record pointing at its complete model."""
    return save_file_fresh(model.save, directory, prefix, ".keras")


def save_file_fresh(write, directory: Path, prefix: str, suffix: str) -> str:
    """`write(path)` under a fresh name (`<prefix>-<time>-<pid>-<random><suffix>`), atomically:
    written as a partial file, then renamed. Returns the name (see save_model_file). The random
    part keeps two saves of one process within a second apart."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
    name = f"{prefix}-{stamp}{suffix}"
    partial = Path(directory) / f".partial-{name}"  # the suffix stays: Keras and numpy want it
    write(partial)
    os.replace(partial, Path(directory) / name)
    return name


def drop_other_models(directory: Path, prefix: str, keep: str, suffix: str = ".keras") -> None:
    for old in Path(directory).glob(f"{prefix}-*{suffix}"):
        if old.name != keep:
            old.unlink(missing_ok=True)


def models_dir(data_dir: Path, collection: str) -> Path:
    """Where a collection's trained models live under the data dir."""
    return Path(data_dir).expanduser() / "models" / collection
