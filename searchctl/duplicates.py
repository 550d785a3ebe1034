"""Duplicate products: photos that are byte-identical (the photo hash ingest keeps in each
payload) and photos that are near-identical (a vector's cosine at or above a threshold); and
the collapse of a hit list to one hit per such group (`query --dedupe`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ingest.sync import PHOTO_HASH_FIELD
from qdrant.base import Hit, VectorStore
from searchctl.reporting import NO_PROGRESS, Progress

# Cosine of the backbone vectors at which two photos count as the same picture: measured on
# the shared catalog (docs/sync.md, "Duplicates").
DEFAULT_THRESHOLD = 0.97
NEIGHBOURS = 10  # nearest neighbours looked at per product
PAGE = 1000  # products whose vectors are read and searched at a time


@dataclass
class DuplicateGroup:
    kind: str  # "identical": the same photo bytes; "near": vectors at or above the threshold
    ids: list[int]
    weakest: float  # the lowest cosine among the links that make the group (1.0: identical)


@dataclass
class DuplicateReport:
    collection: str
    vector: str
    threshold: float
    points: int
    identical: list[DuplicateGroup] = field(default_factory=list)
    near: list[DuplicateGroup] = field(default_factory=list)
    without_hash: int = 0  # points stored before photo hashes were kept
    seconds: float = 0.0

    def to_json(self) -> dict:
        data = asdict(self)
        data["counts"] = {
            "identical_groups": len(self.identical),
            "identical_products": sum(len(g.ids) for g in self.identical),
            "near_groups": len(self.near),
            "near_products": sum(len(g.ids) for g in self.near),
        }
        return data

    def rows(self) -> list[dict]:
        """One row per product of a group, for --csv."""
        return [
            {"group": n, "kind": g.kind, "id": pid, "weakest": round(g.weakest, 4)}
            for n, g in enumerate([*self.identical, *self.near], 1)
            for pid in g.ids
        ]


class _Groups:
    """Union-find over product ids, keeping each group's weakest link."""

    def __init__(self):
        self.parent: dict[int, int] = {}
        self.weakest: dict[int, float] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def join(self, a: int, b: int, score: float) -> None:
        ra, rb = self.find(a), self.find(b)
        low = min(score, self.weakest.get(ra, 1.0), self.weakest.get(rb, 1.0))
        if ra != rb:
            self.parent[rb] = ra
        self.weakest[ra] = low

    def groups(self) -> list[tuple[list[int], float]]:
        members: dict[int, list[int]] = {}
        for a in list(self.parent):
            members.setdefault(self.find(a), []).append(a)
        return [(sorted(ids), self.weakest.get(root, 1.0)) for root, ids in members.items()]


def find_duplicates(
    store: VectorStore,
    collection: str,
    vector: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    neighbours: int = NEIGHBOURS,
    progress: Progress = NO_PROGRESS,
) -> DuplicateReport:
    """Groups of byte-identical photos, and groups linked by `vector` cosines >= `threshold`
    (each product's `neighbours` nearest are looked at) that are not one identical group."""
    if not 0 < threshold <= 1:
        raise ValueError(f"--threshold {threshold}: a cosine above 0 and at most 1")
    t0 = time.perf_counter()
    report = DuplicateReport(collection, vector, threshold, store.count(collection))
    by_hash: dict[str, list[int]] = {}
    hash_of: dict[int, str] = {}
    links = _Groups()
    progress.phase("duplicates", report.points)
    for page in _pages(store, collection, vector):
        for point in page:
            digest = (point.payload or {}).get(PHOTO_HASH_FIELD)
            if digest is None:
                report.without_hash += 1
            else:
                by_hash.setdefault(digest, []).append(point.id)
                hash_of[point.id] = digest
        with_vector = [p for p in page if p.vectors and vector in p.vectors]
        if with_vector:
            rows = np.stack([p.vectors[vector] for p in with_vector])
            found = store.search_batch(collection, rows, vector, neighbours + 1, with_payload=False)
            for point, hits in zip(with_vector, found):
                for hit in hits:
                    if hit.id != point.id and hit.score >= threshold:
                        links.join(point.id, hit.id, min(float(hit.score), 1.0))
        progress.advance(len(page))
    for ids in by_hash.values():
        if len(ids) > 1:
            report.identical.append(DuplicateGroup("identical", sorted(ids), 1.0))
            for other in ids[1:]:
                links.join(ids[0], other, 1.0)
    for ids, weakest in links.groups():
        if len(ids) > 1 and len({hash_of.get(i, i) for i in ids}) > 1:
            report.near.append(DuplicateGroup("near", ids, weakest))
    report.identical.sort(key=lambda g: (-len(g.ids), g.ids))
    report.near.sort(key=lambda g: (-g.weakest, g.ids))
    report.seconds = time.perf_counter() - t0
    return report


def _pages(store: VectorStore, collection: str, vector: str):
    ids = sorted(store.ids(collection))
    for start in range(0, len(ids), PAGE):
        yield store.retrieve(collection, ids[start : start + PAGE], with_vectors=[vector])


def collapse_duplicates(
    store: VectorStore,
    collection: str,
    hits: Sequence[Hit],
    vector: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Hit]:
    """`hits` with each one dropped that repeats a better hit: the same photo bytes, or a
    `vector` cosine at or above `threshold` with it (the better hit stands for its group)."""
    if len(hits) < 2:
        return list(hits)
    stored = {
        p.id: p for p in store.retrieve(collection, [h.id for h in hits], with_vectors=[vector])
    }
    kept: list[Hit] = []
    kept_rows: list[np.ndarray] = []
    seen_hashes: set[str] = set()
    for hit in hits:
        point = stored.get(hit.id)
        digest = (point.payload or {}).get(PHOTO_HASH_FIELD) if point else None
        row = point.vectors.get(vector) if point and point.vectors else None
        if digest is not None and digest in seen_hashes:
            continue
        if row is not None and kept_rows:
            cosines = np.stack(kept_rows) @ (row / max(float(np.linalg.norm(row)), 1e-12))
            if float(cosines.max()) >= threshold:
                continue
        kept.append(hit)
        if digest is not None:
            seen_hashes.add(digest)
        if row is not None:
            kept_rows.append(row / max(float(np.linalg.norm(row)), 1e-12))
    return kept


def contact_sheet(
    store: VectorStore, collection: str, groups: Sequence[DuplicateGroup], path: Path
) -> Path:
    """One row per group (at most 8 photos each), captioned with ids and the group's kind."""
    from embedder.collection import collection_images
    from embedder.contact_sheet import Tile, write_contact_sheet

    width = min(8, max((len(g.ids) for g in groups), default=1))
    tiles: list[Tile] = []
    for n, group in enumerate(groups, 1):
        ids, paths = collection_images(store, collection, group.ids[:width])
        label = "same bytes" if group.kind == "identical" else f"cos >= {group.weakest:.3f}"
        for pid, photo in zip(ids, paths):
            tiles.append(Tile(photo, [f"id {pid}", f"group {n}", label]))
        tiles += [Tile(None, [""]) for _ in range(width - len(ids))]
    return write_contact_sheet(tiles, path, columns=width)
