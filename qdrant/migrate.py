"""Copy a collection from one store to another: the embedded store to a Qdrant server or
cluster, or back. Points (every named vector and the payload, in one upsert each), the
collection's metadata (the embedder and model records) and its payload indexes.

Resumable: the points the target already holds are not copied again, so a run stopped
half-way is finished by the next. Verified at the end: the counts, the ids, and a seeded
sample of points compared payload by payload and vector by vector.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from qdrant.base import PointData, StoreError, VectorStore

PAGE = 500  # points read and written at a time
SAMPLE = 200  # points compared vector by vector at the end
VECTOR_TOLERANCE = 1e-5  # the target normalises the (unit) vectors again: float32 rounding


class Progress:  # the part of searchctl.reporting.Progress used here (qdrant sits below it)
    def phase(self, label: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


@dataclass
class MigrationReport:
    source: str
    target: str
    collection: str
    target_collection: str
    created: bool = False  # the target collection was made by this run
    source_points: int = 0
    copied: int = 0
    already_there: int = 0
    target_points: int = 0
    indexes: dict[str, str] = field(default_factory=dict)
    target_indexes: dict[str, str] = field(default_factory=dict)
    sampled: int = 0
    problems: list[str] = field(default_factory=list)  # what verification found wrong
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {**asdict(self), "verified": self.verified}


def migrate(
    source: VectorStore,
    target: VectorStore,
    collection: str,
    target_collection: str | None = None,
    *,
    page: int = PAGE,
    sample: int = SAMPLE,
    seed: int = 0,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy `collection` of `source` to `target_collection` (default: the same name) of
    `target`, then verify; see the module's docstring."""
    t0 = time.perf_counter()
    progress = progress or Progress()
    name = target_collection or collection
    report = MigrationReport(repr(source), repr(target), collection, name)
    vectors = source.vector_sizes(collection)
    metadata = source.get_metadata(collection)
    report.indexes = source.payload_indexes(collection)
    if target.has_collection(name):
        theirs = target.vector_sizes(name)
        if theirs != vectors:
            raise StoreError(
                f"{name!r} on {target!r} has vectors {theirs}, not {vectors} as {collection!r} "
                "has: copy into another --to-collection"
            )
        target.set_metadata(name, metadata)
        for index_field, kind in report.indexes.items():
            target.create_index(name, index_field, kind)
    else:
        target.create_collection(name, vectors, metadata, report.indexes)
        report.created = True
    wanted = sorted(source.ids(collection))
    have = target.ids(name)
    todo = [i for i in wanted if i not in have]
    report.source_points, report.already_there = len(wanted), len(wanted) - len(todo)
    progress.phase("migrate", len(todo))
    for start in range(0, len(todo), page):
        points = source.retrieve(collection, todo[start : start + page], with_vectors=True)
        target.upsert(name, [PointData(p.id, p.vectors or {}, p.payload or {}) for p in points])
        report.copied += len(points)
        progress.advance(len(todo[start : start + page]))
    target.optimize(name)
    _verify(source, target, collection, name, wanted, report, sample, seed)
    report.seconds = time.perf_counter() - t0
    return report


def _verify(source, target, collection, name, wanted, report, sample, seed) -> None:
    report.target_points = target.count(name)
    theirs = target.ids(name)
    missing, extra = set(wanted) - theirs, theirs - set(wanted)
    if missing:
        report.problems.append(f"{len(missing)} points missing, e.g. {sorted(missing)[:5]}")
    if extra:
        report.problems.append(f"{len(extra)} points the source lacks, e.g. {sorted(extra)[:5]}")
    if target.get_metadata(name) != source.get_metadata(collection):
        report.problems.append("the collection metadata differs")
    report.target_indexes = target.payload_indexes(name)
    picked = sorted(random.Random(seed).sample(wanted, min(sample, len(wanted))))
    theirs_points = {p.id: p for p in target.retrieve(name, picked, with_vectors=True)}
    for ours in source.retrieve(collection, picked, with_vectors=True):
        other = theirs_points.get(ours.id)
        if other is None:
            continue  # counted as missing above
        if (ours.payload or {}) != (other.payload or {}):
            report.problems.append(f"point {ours.id}: payload differs")
        for vector, row in (ours.vectors or {}).items():
            copy = (other.vectors or {}).get(vector)
            if copy is None or not np.allclose(row, copy, atol=VECTOR_TOLERANCE):
                report.problems.append(f"point {ours.id}: vector {vector!r} differs")
        report.sampled += 1
