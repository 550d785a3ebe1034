"""Two `ingest --shard I/2` processes at once against one unsharded `ingest`, on this machine.

Each run is `searchctl ingest` of the first --limit products of the shared catalog with the
per-photo stages only (backbone and colour: what a shard does), MobileNetV2 weights from
../shared. The embedded store is one process at a time, so each shard writes its own data
dir here; on a cluster they would write one collection on a Qdrant server (no server runs
on this machine). Prints each run's wall time and images/s.

    python bench/shards.py --limit 10000
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATASET, MOBILENET_WEIGHTS


def ingest_command(data_dir: Path, limit: int, shard: str | None) -> list[str]:
    command = [
        sys.executable, "-m", "searchctl.cli", "ingest", str(DATASET), "-c", "bench",
        "--backbone", "mobilenet_v2", "--weights", str(MOBILENET_WEIGHTS),
        "--limit", str(limit), "--no-autoencoder", "--no-classifier",
        "--data-dir", str(data_dir), "--json",
    ]  # fmt: skip
    return command + (["--shard", shard] if shard else [])


def run_all(commands: list[list[str]]) -> float:
    """Start every command at once; the wall time until the last one ends."""
    start = time.perf_counter()
    running = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands
    ]
    for process in running:
        _, stderr = process.communicate()
        if process.returncode:
            raise SystemExit(f"failed: {stderr.decode()[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=10_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="searchctl-shards-"))
    try:
        one = run_all([ingest_command(work / "one", args.limit, None)])
        two = run_all([ingest_command(work / f"shard{i}", args.limit, f"{i}/2") for i in (0, 1)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = args.limit
    print(f"{n:,} products, backbone and colour stages, process start included")
    print(f"1 unsharded run:       {one:6.1f} s  {n / one:5.0f} images/s")
    print(f"2 shards at once:      {two:6.1f} s  {n / two:5.0f} images/s  ({one / two:.2f}x)")


if __name__ == "__main__":
    main()
