"""Memory of Qdrant Edge's index build alone, in a process that holds nothing else.

On a copy of STORE's collection (the original is left as it is): a payload write to every
point (as a tag stage makes), then a forced index build (`optimize`), as the main job ends.
Prints the peaks of RSS, of anonymous memory and of mapped files (the segment files Edge
maps), sampled every 0.2 s, after the writes and after the build. `--reopen` closes and
opens the collection between the two, to see whether the writes' mapped pages carry over.

    python bench/index_build_memory.py --data-dir STORE --collection fashion-product-images-small
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from _common import MEMORY_FIELDS, memory_sample


class Peaks:
    """Peak GiB of each MEMORY_FIELDS entry of this process, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        self.gib = dict.fromkeys(MEMORY_FIELDS.values(), 0.0)
        threading.Thread(target=self._watch, args=(every,), daemon=True).start()

    def _watch(self, every: float) -> None:
        while True:
            for name, kb in memory_sample(os.getpid()).items():
                self.gib[name] = max(self.gib[name], kb / 2**20)
            time.sleep(every)

    def __str__(self) -> str:
        return ", ".join(f"{name} {gib:.2f} GiB" for name, gib in self.gib.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--reopen", action="store_true")
    args = ap.parse_args()

    from qdrant.edge import EdgeStore

    with tempfile.TemporaryDirectory(prefix="index-build-") as tmp:
        source = args.data_dir / "collections" / args.collection
        shutil.copytree(source, Path(tmp) / "collections" / args.collection)
        peaks = Peaks()
        with EdgeStore(tmp) as store:
            ids = sorted(store.ids(args.collection))
            started = time.perf_counter()
            for start in range(0, len(ids), 2000):
                page = ids[start : start + 2000]
                store.set_payloads(args.collection, {i: {"probe": start} for i in page})
            print(f"payload writes to {len(ids):,} points: "
                  f"{time.perf_counter() - started:.0f} s; peaks: {peaks}", flush=True)  # fmt: skip
            if args.reopen:
                store._shards.pop(args.collection).close()
                store._shard(args.collection)
            started = time.perf_counter()
            store.optimize(args.collection, force=True)
            time.sleep(0.5)
            print(f"index build: {time.perf_counter() - started:.0f} s; peaks: {peaks}")


if __name__ == "__main__":
    main()
