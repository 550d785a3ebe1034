"""kill -9 an ingest of the shared catalog half-way, re-run it, and check nothing was lost.

    python bench/kill_resume.py --kill-after 120

Prints the points stored before the kill, what the re-run stored, the final count, and checks
every payload against styles.csv and every vector for being finite and unit length.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATASET, MOBILENET_WEIGHTS

from ingest.catalog import read_catalog
from ingest.pipeline import product_payload
from qdrant.edge import EdgeStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kill-after", type=float, default=120.0, help="seconds")
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="searchctl-kill-"))
    cli = Path(sys.executable).with_name("searchctl")
    cmd = [str(cli), "ingest", str(DATASET), "--backbone", "mobilenet_v2",
           "--weights", str(MOBILENET_WEIGHTS), "--collection", "killed",
           "--data-dir", str(data_dir), "--json"]  # fmt: skip

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(args.kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    print(f"killed with SIGKILL after {args.kill_after:.0f} s (exit {proc.returncode})")

    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    print(
        f"re-run: {report['already_stored']} points survived the kill, stored "
        f"{report['stored']} more in {time.perf_counter() - t0:.0f} s; "
        f"{report['points_in_collection']} points, {len(report['bad_images'])} bad images"
    )

    catalog = read_catalog(DATASET)
    expected = {p.id: product_payload(p, catalog.root) for p in catalog.with_image}
    with EdgeStore(data_dir) as store:
        ids = store.ids("killed")
        wrong = 0
        id_list = sorted(ids)
        for start in range(0, len(id_list), 2000):
            for point in store.retrieve("killed", id_list[start : start + 2000], True):
                vec = point.vectors["mobilenet_v2"]
                ok = point.payload == expected[point.id] and np.isfinite(vec).all()
                wrong += not (ok and abs(np.linalg.norm(vec) - 1) < 1e-3)
    missing = set(expected) - ids
    print(
        f"final: {len(ids)} points for {len(expected)} catalog images; missing {len(missing)}, "
        f"extra {len(ids - set(expected))}, wrong payload or vector {wrong}"
    )


if __name__ == "__main__":
    main()
