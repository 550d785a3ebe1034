"""Catalog photos decoded once per run, kept on disk for the stages that read them.

Decoding a catalog photo (and cutting it out) costs more than fitting it to a size, and each
stage of an ingest used to decode every photo again (colour, autoencoder, tuned vectors) and
the autoencoder and the `finetune` classifier held the whole catalog's pixels in memory
while they trained. Here a photo is decoded once: the backbone stage hands each photo it
prepared to `DecodedPhotos.keep`, which fits it to every size the later stages read and
writes one uint8 row per size to a file under the data dir. Stages read rows in batches
(`load`, `rows`), so memory follows the batch, not the catalog. A photo nobody kept in this
run (a product stored by an earlier run) is decoded the first time a stage asks for it. The
files last one run: `close` removes them, and the next run removes those of a run that was
killed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from embedder.images import BadImage, fit_image, prepare_photo
from searchctl.reporting import NO_PROGRESS, Progress

Size = tuple[int, int, str]  # height, width, fit ("letterbox" or "squash")
DECODED_DIR = "decoded"
RUN_PREFIX = "run-"  # then the process id: run-<pid>-<random>


def decoded_dir(data_dir: Path) -> Path:
    """Where a run keeps its decoded photos (a directory of its own inside, removed after)."""
    return Path(data_dir).expanduser() / DECODED_DIR


def remove_stale_runs(parent: Path) -> None:
    """Remove the decoded photos of runs whose process is gone (killed: `close` never ran).
    Runs of live processes are left alone: shards on one machine may share a data dir."""
    for run in parent.glob(f"{RUN_PREFIX}*"):
        pid = run.name[len(RUN_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(run, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class DecodedPhotosUnavailable(ValueError):
    """The data dir cannot hold the run's decoded photos."""


class RowFile:
    """Rows of one shape and dtype in a file, written and read by position (pwrite, pread:
    none of it is mapped into the process's memory). It indexes like an array of `len(self)`
    rows: `rows[i]`, `rows[a:b]` (one read), `rows[index_array]`. Without a `path`, an unnamed
    file in `directory` that is gone once closed, or once its process is killed."""

    def __init__(self, shape: tuple[int, ...], dtype, path: Path | None = None,
                 directory: Path | None = None):  # fmt: skip
        self.row_shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self._temporary = None
        if path is None:
            self._temporary = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - see close
            self.fd = self._temporary.fileno()
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.count = 0  # rows written: one past the last

    def write(self, row: int, values: np.ndarray) -> None:
        os.pwrite(self.fd, np.ascontiguousarray(values, self.dtype).tobytes(), row * self.row_bytes)
        self.count = max(self.count, row + 1)

    def read(self, rows: Sequence[int]) -> np.ndarray:
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        flat = out.reshape(len(rows), -1)
        for i, row in enumerate(rows):
            data = os.pread(self.fd, self.row_bytes, int(row) * self.row_bytes)
            flat[i] = np.frombuffer(data, self.dtype)
        return out

    def __setitem__(self, row: int, values: np.ndarray) -> None:
        self.write(row, values)

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, *self.row_shape)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.count)
            if step != 1:
                return self.read(range(start, stop, step))
            size = max(stop - start, 0)
            data = os.pread(self.fd, size * self.row_bytes, start * self.row_bytes)
            return np.frombuffer(data, self.dtype).reshape(size, *self.row_shape).copy()
        if np.isscalar(index):
            row = int(index) + (self.count if int(index) < 0 else 0)
            if not 0 <= row < self.count:
                raise IndexError(f"row {index} of {self.count}")
            return self.read([row])[0]
        return self.read(np.asarray(index).tolist())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every row, read at once (for what is small enough to hold)."""
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)

    def close(self) -> None:
        if self._temporary is not None:
            self._temporary.close()
        else:
            os.close(self.fd)


class _SizeFile:
    """One size's rows: uint8 height x width x 3 photos appended to one file."""

    def __init__(self, directory: Path, size: Size):
        height, width, fit = size
        self.shape = (height, width, 3)
        self.file = RowFile(self.shape, np.uint8, directory / f"{height}x{width}-{fit}.u8")
        self.rows: dict[int, int] = {}  # product id -> row

    def write(self, pid: int, pixels: np.ndarray) -> None:
        """Called under the owner's lock."""
        row = self.rows.get(pid, len(self.rows))
        self.file.write(row, pixels)
        self.rows[pid] = row

    def read(self, ids: Sequence[int]) -> np.ndarray:
        return self.file.read([self.rows[pid] for pid in ids])


class DecodedPhotos:
    """The run's decoded photos at each of `sizes`, cut out or not as the collection records.

    Thread-safe: the backbone's decode threads keep photos while a stage may read."""

    def __init__(
        self,
        parent: Path,
        sizes: Iterable[Size] = (),
        *,
        cutout: bool,
        workers: int = 2,
    ):
        self.parent = Path(parent).expanduser()
        self.directory: Path | None = None  # made at the first photo kept
        self.cutout = cutout
        self.workers = workers
        self._lock = threading.Lock()
        self._sizes = list(dict.fromkeys(sizes))
        self._files: dict[Size, _SizeFile] = {}
        self._bad: dict[int, str] = {}  # product id -> why its photo cannot be used

    def _open(self) -> None:
        """Called under the lock: the run's directory and a file per size."""
        if self.directory is None:
            try:
                self.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_runs(self.parent)
                prefix = f"{RUN_PREFIX}{os.getpid()}-"
                self.directory = Path(tempfile.mkdtemp(prefix=prefix, dir=self.parent))
            except OSError as exc:
                raise DecodedPhotosUnavailable(
                    f"cannot keep decoded photos in {self.parent}: {exc.strerror}. Choose "
                    "another --data-dir (or SEARCHCTL_DATA_DIR)."
                ) from exc
        for size in self._sizes:
            if size not in self._files:
                self._files[size] = _SizeFile(self.directory, size)

    def _file(self, size: Size) -> _SizeFile:
        with self._lock:
            if size not in self._sizes:
                self._sizes.append(size)
            self._open()
            return self._files[size]

    def keep(self, pid: int, photo: Image.Image) -> None:
        """A prepared photo (embedder.images.prepare_photo), fitted to every size and kept."""
        fitted = {size: fit_image(photo, *size) for size in self._sizes}
        with self._lock:
            self._open()
            for size, pixels in fitted.items():
                self._files[size].write(pid, pixels)
            self._bad.pop(pid, None)

    def keep_bad(self, pid: int, reason: str) -> None:
        with self._lock:
            self._bad[pid] = reason

    def ensure(
        self,
        ids: Sequence[int],
        paths: Sequence[Path | str],
        size: Size,
        progress: Progress = NO_PROGRESS,
    ) -> list[int]:
        """Decode (in threads) and keep the photos of products `ids` (files `paths`) that are
        not kept at `size` yet; the indexes in `ids` of those that are usable."""
        file = self._file(size)
        missing = [i for i, pid in enumerate(ids) if pid not in file.rows and pid not in self._bad]
        if missing:
            self._decode([ids[i] for i in missing], [paths[i] for i in missing])
        progress.advance(len(ids))
        return [i for i, pid in enumerate(ids) if pid in file.rows]

    def load(
        self,
        ids: Sequence[int],
        paths: Sequence[Path | str],
        size: Size,
        progress: Progress = NO_PROGRESS,
    ) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
        """The photos of products `ids` (files `paths`) at `size`: (uint8 N x H x W x 3 of
        the good ones, their indexes in `ids`, (index, reason) of the bad ones), as
        embedder.images.load_images gives them. Photos not kept yet are decoded now."""
        good = self.ensure(ids, paths, size, progress)
        bad = [(i, self._bad[pid]) for i, pid in enumerate(ids) if pid in self._bad]
        return self._file(size).read([ids[i] for i in good]), good, bad

    def problem(self, pid: int) -> str:
        """Why product `pid`'s photo is not kept."""
        return self._bad.get(pid, "photo not decoded")

    def _decode(self, ids: list[int], paths: list) -> None:
        def one(k: int) -> None:
            try:
                self.keep(ids[k], prepare_photo(paths[k], self.cutout))
            except BadImage as exc:
                self.keep_bad(ids[k], str(exc))

        workers = max(1, self.workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="searchctl-decode") as pool:
            list(pool.map(one, range(len(ids))))

    def rows(self, ids: Sequence[int], size: Size) -> PhotoRows:
        """Kept photos of `ids` at `size` as an array-like read from disk a few at a time."""
        file = self._file(size)
        lacking = [pid for pid in ids if pid not in file.rows]
        if lacking:
            raise KeyError(f"photos not decoded at {size}: ids {lacking[:5]}")
        return PhotoRows(file, list(ids))

    def close(self) -> None:
        """Remove the files."""
        with self._lock:
            for file in self._files.values():
                file.file.close()
            self._files.clear()
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> DecodedPhotos:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PhotoRows:
    """Photos on disk that index like a uint8 N x H x W x 3 array: `rows[i]`, `rows[a:b]`,
    `rows[index_array]` read only those photos (what a training batch needs)."""

    def __init__(self, file: _SizeFile, ids: list[int]):
        self._file, self.ids = file, ids
        self.shape = (len(ids), *file.shape)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            positions = range(*index.indices(len(self.ids)))
        elif np.isscalar(index):
            return self._file.read([self.ids[int(index)]])[0]
        else:
            positions = np.asarray(index).tolist()
        return self._file.read([self.ids[p] for p in positions])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every photo, read at once (for what is small enough to hold)."""
        photos = self[:]
        return photos if dtype is None else photos.astype(dtype)
