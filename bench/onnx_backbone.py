"""The frozen backbone under ONNX Runtime against TensorFlow, on this CPU: the Embedder's own
traced forward (uint8 photo in, normalisation included, float32 vector out) converted with
tf2onnx by embedder.onnx_backbone (timed, not from its cache), then both run on batches of 64
and of 1 random photos for --seconds each, alternated over --rounds; and the two runtimes'
vectors of 256 catalog photos compared (cosine).

    python bench/onnx_backbone.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATASET, MOBILENET_WEIGHTS


def rate(run, batch: np.ndarray, seconds: float) -> float:
    run(batch)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import onnxruntime as ort
    import tf2onnx

    from embedder.images import load_image
    from embedder.model import Embedder
    from embedder.onnx_backbone import OnnxForward
    from embedder.spec import DEFAULT_INPUT_SIZE, make_spec

    spec = make_spec("mobilenet_v2", MOBILENET_WEIGHTS, DEFAULT_INPUT_SIZE)
    embedder = Embedder(spec, runtime="tensorflow")
    height, width = spec.input_height, spec.input_width
    with tempfile.TemporaryDirectory() as tmp:  # not the cache: the conversion is timed
        started = time.perf_counter()
        onnx_embed = OnnxForward(embedder._forward, spec, Path(tmp))
        converted = time.perf_counter() - started

    print(f"tf2onnx {tf2onnx.__version__}, onnxruntime {ort.__version__}: converted in "
          f"{converted:.1f} s")  # fmt: skip
    photos = sorted((DATASET / "images").glob("*.jpg"))[:256]
    pixels = np.stack([load_image(p, height, width) for p in photos])
    a, b = embedder.embed(pixels), onnx_embed(pixels)
    cosine = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"cosine of the two runtimes' vectors, 256 catalog photos: min {cosine.min():.7f}")
    rng = np.random.default_rng(0)
    print("| batch | TensorFlow images/s (each round) | ONNX Runtime images/s | ONNX / TF |")
    print("| --- | --- | --- | --- |")
    for size in (64, 1):
        batch = rng.integers(0, 256, (size, height, width, 3), np.uint8)
        tf_rates, onnx_rates = [], []
        for _ in range(args.rounds):
            tf_rates.append(rate(embedder.embed, batch, args.seconds))
            onnx_rates.append(rate(onnx_embed, batch, args.seconds))
        ratio = np.mean(onnx_rates) / np.mean(tf_rates)
        print(f"| {size} | {', '.join(f'{r:.1f}' for r in tf_rates)} | "
              f"{', '.join(f'{r:.1f}' for r in onnx_rates)} | {ratio:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
