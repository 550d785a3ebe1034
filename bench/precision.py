"""The backbone's throughput at float32 and at mixed bfloat16 / float16 compute on this CPU,
and how far the vectors move: the bare model (no decode), batches of 64 random photos for
--seconds each, policies alternated over --rounds; then each policy's vectors of 256
catalog photos against float32's (cosine). Prints the CPU's bf16-related flags: bfloat16
pays only where the CPU computes it (AVX512_BF16, AMX), and is emulated elsewhere.

    python bench/precision.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATASET, MOBILENET_WEIGHTS

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16")
            return " ".join(f for f in line.split() if f in wanted) or "none of them"
    return "unknown"


def measure(policy: str, seconds: float) -> None:
    """One policy in this process (Keras' policy is global): img/s and 256 photos' vectors."""
    import keras

    from embedder.images import load_image
    from embedder.model import Embedder
    from embedder.spec import DEFAULT_INPUT_SIZE, make_spec

    if policy != "float32":
        keras.mixed_precision.set_global_policy(policy)
    embedder = Embedder(make_spec("mobilenet_v2", MOBILENET_WEIGHTS, DEFAULT_INPUT_SIZE))
    height, width = embedder.spec.input_height, embedder.spec.input_width
    photos = sorted((DATASET / "images").glob("*.jpg"))[:256]
    pixels = np.stack([load_image(p, height, width) for p in photos])
    batch = np.random.default_rng(0).integers(0, 256, (64, height, width, 3), np.uint8)
    embedder.embed(batch)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        embedder.embed(batch)
        done += len(batch)
    rate = done / (time.perf_counter() - started)
    np.save(sys.argv[-1], np.asarray(embedder.embed(pixels), np.float32))  # the `out` argument
    print(f"{rate:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure(args.one, args.seconds)
        return
    print(f"CPU flags: {cpu_flags()}")
    import tempfile

    rates: dict[str, list[float]] = {p: [] for p in POLICIES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for policy in POLICIES:
                out = f"{tmp}/{policy}.npy"
                command = [sys.executable, __file__, "--one", policy,
                           "--seconds", str(args.seconds), out]  # fmt: skip
                answer = subprocess.run(command, capture_output=True, text=True, check=True)
                rates[policy].append(float(answer.stdout.strip().splitlines()[-1]))
        reference = np.load(f"{tmp}/float32.npy")
        print("| compute | images/s (each round) | against float32 | "
              "cosine with float32's vectors, min / median |")  # fmt: skip
        print("| --- | --- | --- | --- |")
        for policy in POLICIES:
            vectors = np.load(f"{tmp}/{policy}.npy")
            cos = np.sum(vectors * reference, 1) / (
                np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
            )
            mean = np.mean(rates[policy])
            ratio = mean / np.mean(rates["float32"])
            shown = ", ".join(f"{r:.1f}" for r in rates[policy])
            print(f"| {policy} | {shown} | {ratio:.2f}x | {cos.min():.4f} / {np.median(cos):.4f} |")


if __name__ == "__main__":
    main()
