"""Run a command and print its wall time and peak memory, split by kind.

`/usr/bin/time -v` gives one peak RSS, which counts the file pages a process has mapped: the
embedded store (Qdrant Edge) maps its segment files, and every page it touched while writing
and indexing counts, though the kernel can drop those pages whenever memory is short. This
samples /proc/PID/status every --every seconds and prints the peaks of RSS, of anonymous
memory (what the process itself holds: arrays, models, Python objects) and of mapped files.

    python bench/peak_memory.py -- searchctl ingest CATALOG --backbone mobilenet_v2 --weights W
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _common import MEMORY_FIELDS, memory_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command after --")
    start = time.perf_counter()
    process = subprocess.Popen(command)
    peaks = dict.fromkeys(MEMORY_FIELDS.values(), 0)
    while process.poll() is None:
        for name, kb in memory_sample(process.pid).items():
            peaks[name] = max(peaks[name], kb)
        time.sleep(args.every)
    wall = time.perf_counter() - start
    minutes, seconds = divmod(wall, 60)
    print(
        f"wall {int(minutes)} min {seconds:.0f} s; peak RSS {peaks['rss'] / 2**20:.2f} GiB "
        f"(anonymous {peaks['anonymous'] / 2**20:.2f} GiB, mapped files "
        f"{peaks['mapped files'] / 2**20:.2f} GiB; each its own peak); exit {process.returncode}",
        file=sys.stderr,
    )
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
