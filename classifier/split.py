"""Seeded stratified train / validation / test split of a collection's products."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STRATIFY_FIELD = "articleType"
MIN_STRATUM = 10  # rarer articleTypes are pooled into one stratum


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indexes
    val: np.ndarray  # inside the training part: early stopping only
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def stratified_split(
    payloads: Sequence[dict], seed: int, test_size: float = 0.2, val_size: float = 0.1
) -> Split:
    """80/20 train/test stratified by articleType, then 10 % of train held for validation.

    A catalog too small to stratify (fewer rows in a part than strata) is split at random."""
    strata = [str(p.get(STRATIFY_FIELD)) for p in payloads]
    counts = Counter(strata)
    strata = np.array([s if counts[s] >= MIN_STRATUM else "(rare)" for s in strata])
    rows = np.arange(len(payloads))
    train, test = _split(rows, strata, test_size, seed)
    train, val = _split(train, strata[train], val_size, seed)
    return Split(np.sort(train), np.sort(val), np.sort(test))


def _split(rows: np.ndarray, strata: np.ndarray, size: float, seed: int):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(rows, test_size=size, stratify=strata, random_state=seed)
    except ValueError:  # a stratum too small for the part
        return train_test_split(rows, test_size=size, random_state=seed)
