"""The frozen backbone under ONNX Runtime: on the 2-core development CPU it embeds 3.1x
(batches of 64) to 3.9x (one photo) as many photos a second as TensorFlow, with the same
vectors (cosine >= 0.9999998; docs/embedders.md, `bench/onnx_backbone.py`).

The Embedder's own traced TensorFlow forward (uint8 photo in, normalisation included) is
converted once with tf2onnx and kept in a cache directory, keyed by everything that changes
the vectors and by the converter's and runtimes' versions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from embedder.spec import EmbedderSpec

OPSET = 17
RUN_ROWS = 64  # photos a run (the ingest's batch)
CACHE_ENV = "SEARCHCTL_CACHE_DIR"


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tf2onnx"))


def cache_dir() -> Path:
    """$SEARCHCTL_CACHE_DIR, else $XDG_CACHE_HOME/searchctl, else ~/.cache/searchctl."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "searchctl"


def model_file(spec: EmbedderSpec, directory: Path | None = None) -> Path:
    """Where the spec's converted backbone is kept."""
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    versions = [tf.__version__, tf2onnx.__version__, onnxruntime.__version__, OPSET]
    key = json.dumps([spec.identity(), versions], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (directory or cache_dir()) / "onnx" / f"{spec.backbone}-{digest}.onnx"


class OnnxForward:
    """`forward` (a traced tf.function of uint8 N x H x W x 3) as an ONNX Runtime session."""

    def __init__(self, forward, spec: EmbedderSpec, directory: Path | None = None):
        self.path = model_file(spec, directory)
        self.converted = False
        self._narrow = None  # a one-thread session, made on first use (__call__'s `threads`)
        try:
            if not self.path.is_file():
                self._convert(forward, spec, self.path)
            try:
                self.session = _session(self.path)
            except Exception:  # noqa: BLE001 - a damaged file in the cache: convert it again
                self._convert(forward, spec, self.path)
                self.session = _session(self.path)
        except OSError:  # a cache that cannot be written: this process converts its own
            with tempfile.TemporaryDirectory() as own:
                path = Path(own) / self.path.name
                self._convert(forward, spec, path)
                self.session = _session(path)  # read whole: the file may go
                self._narrow = _session(path, threads=1)
        self.input = self.session.get_inputs()[0].name

    def _convert(self, forward, spec: EmbedderSpec, path: Path) -> None:
        import tensorflow as tf
        import tf2onnx

        path.parent.mkdir(parents=True, exist_ok=True)
        signature = (tf.TensorSpec([None, spec.input_height, spec.input_width, 3], tf.uint8),)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(handle)
        try:
            tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET,
                                          output_path=temporary)  # fmt: skip
            os.replace(temporary, path)  # whole or not at all, for other processes too
        finally:
            Path(temporary).unlink(missing_ok=True)
        self.converted = True

    def __call__(self, images: np.ndarray, threads: int | None = None) -> np.ndarray:
        """`threads=1` runs on one thread: calls made side by side (a busy server) each
        take one core. A photo on one thread costs 4.1 ms of CPU, on two 5.4 ms for 0.6 ms
        less wait (bench/serve_load.py; docs/benchmarks.md, "Serving over HTTP")."""
        images = np.asarray(images, dtype=np.uint8)
        session = self.session
        if threads == 1:
            if self._narrow is None:
                self._narrow = _session(self.path, threads=1)
            session = self._narrow
        # At most RUN_ROWS a run: ONNX Runtime's memory arena keeps the peak of its largest
        # run (512 photos at 160x120: 2.6 GB, against 1.1 GB at 64).
        outs = [session.run(None, {self.input: images[i : i + RUN_ROWS]})[0]
                for i in range(0, len(images), RUN_ROWS)]  # fmt: skip
        if not outs:
            outs = [session.run(None, {self.input: images})[0]]
        return np.asarray(np.concatenate(outs), dtype=np.float32)


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.log_severity_level = 3  # errors only
    # Idle threads sleep rather than spin: spinning doubled a lone search's CPU time and left
    # nothing for concurrent searches on a server.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
