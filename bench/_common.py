"""Helpers shared by the benchmark scripts: where the shared data is, peak memory."""

from __future__ import annotations

import resource
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DATASET = SHARED / "datasets" / "fashion-product-images-small"
MOBILENET_WEIGHTS = SHARED / "models" / "mobilenet_v2_imagenet_notop.weights.h5"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
