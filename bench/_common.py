"""Helpers shared by the benchmark scripts: where the shared data is, peak memory."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DATASET = SHARED / "datasets" / "fashion-product-images-small"
MOBILENET_WEIGHTS = SHARED / "models" / "mobilenet_v2_imagenet_notop.weights.h5"


# /proc/PID/status lines of a process's memory, by kind: the embedded store's memory-mapped
# segment files count in RSS beside what the process itself holds (anonymous).
MEMORY_FIELDS = {"VmRSS": "rss", "RssAnon": "anonymous", "RssFile": "mapped files"}


def memory_sample(pid: int) -> dict[str, int]:
    """kB of each MEMORY_FIELDS entry of a process now, or {} once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            lines = status.read().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in MEMORY_FIELDS:
            values[MEMORY_FIELDS[key]] = int(rest.split()[0])
    return values


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_serve(data_dir: Path, collection: str, port: int, extra: list[str] | None = None,
                **popen) -> tuple[subprocess.Popen, str]:  # fmt: skip
    """`searchctl serve` started as a user starts it, once /health says ready: the process
    and its base URL (stopped again if it never gets ready)."""
    import httpx

    command = [sys.executable, "-m", "searchctl.cli", "serve", "--data-dir", str(data_dir),
               "-c", collection, "--port", str(port), *(extra or [])]  # fmt: skip
    server = subprocess.Popen(command, **popen)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    return server, base
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                sys.exit("the server stopped before it was ready")
            time.sleep(0.1)
    except BaseException:
        server.terminate()
        raise


class PrintNotes:
    """The library's Progress (searchctl.reporting) for a bench: notes and stage summaries
    printed as they come, no bars."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix

    def phase(self, label, total=None):
        pass

    def advance(self, n=1):
        pass

    def note(self, text):
        print(f"{self.prefix}{text}", flush=True)

    def done(self, report):
        print(f"{self.prefix}{report.summary}", flush=True)
