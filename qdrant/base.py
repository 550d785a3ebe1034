"""The store interface that ingest, query and eval talk to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A conjunction of conditions on payload fields: [("gender", "Men"), ("year", 2012)] are
# equalities; a Words value, ("productDisplayName", Words("navy shirt")), asks for every word.
Where = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class Words:
    """A full-text condition: the field (with a TEXT_INDEX) holds every one of these words."""

    text: str


VectorSelection = bool | Sequence[str]  # all named vectors, none, or these

# Payload fields indexed for filtering, by type.
KEYWORD_INDEX = "keyword"
INTEGER_INDEX = "integer"
TEXT_INDEX = "text"  # words, lower-cased, with BM25 scores where the store has them


def unit_rows(vectors) -> np.ndarray:
    """L2-normalise rows in float64, returned as float32.

    Qdrant leaves vectors shorter than float32 epsilon unnormalised under cosine distance, so
    both stores get unit vectors from us whatever the model's output scale.
    """
    arr = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return (arr / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class StoreError(Exception):
    """A store problem the user can act on; the message says what to do."""


class CollectionNotFound(StoreError):
    pass


class StoreLocked(StoreError):
    """The embedded collection is open in another process."""


class ReadOnlyCollection(StoreError):
    """A collection this process may read but not change."""


class VectorNotAddable(StoreError):
    """The store cannot add (or resize) a named vector of an existing collection."""


@dataclass(frozen=True)
class PointData:
    """A point to write: product id, one vector per name, payload."""

    id: int
    vectors: dict[str, np.ndarray]
    payload: dict


@dataclass(frozen=True)
class StoredPoint:
    id: int
    payload: dict | None
    vectors: dict[str, np.ndarray] | None


def stored_points(wanted: list[int], records, with_vectors: VectorSelection) -> list[StoredPoint]:
    """Records of either Qdrant API (id, payload, vector dict) -> StoredPoints in `wanted` order."""
    by_id = {int(r.id): r for r in records}
    return [
        StoredPoint(
            i,
            by_id[i].payload,
            {k: np.asarray(v, dtype=np.float32) for k, v in (by_id[i].vector or {}).items()}
            if with_vectors
            else None,
        )
        for i in wanted
        if i in by_id
    ]


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    payload: dict | None


def payload_groups(payloads: dict[int, dict]) -> list[tuple[dict, list[int]]]:
    """{id: payload} -> [(payload, ids)]: one store operation per distinct payload."""
    import json

    groups: dict[str, tuple[dict, list[int]]] = {}
    for pid, payload in payloads.items():
        key = json.dumps(payload, sort_keys=True, default=str)
        groups.setdefault(key, (payload, []))[1].append(int(pid))
    return list(groups.values())


def row_conditions(
    n: int, where: Where | None, row_where: Sequence[Where | None] | None
) -> list[list[tuple[str, Any]]]:
    """The conditions of each of n batched queries: the shared ones plus the row's own."""
    shared = list(where or [])
    if row_where is None:
        return [shared] * n
    if len(row_where) != n:
        raise ValueError(f"row_where has {len(row_where)} entries for {n} query vectors")
    return [shared + list(w or []) for w in row_where]


class VectorStore(ABC):
    """One point per product, named vectors with cosine distance, payload indexes on labels."""

    @abstractmethod
    def list_collections(self) -> list[str]: ...

    @abstractmethod
    def create_collection(
        self,
        name: str,
        vectors: dict[str, int],
        metadata: dict,
        indexes: dict[str, str],
    ) -> None:
        """Create a collection with named cosine vectors {name: dim} and payload indexes
        {field: KEYWORD_INDEX | INTEGER_INDEX}; `metadata` is kept with it (JSON-able)."""

    @abstractmethod
    def get_metadata(self, name: str) -> dict: ...

    @abstractmethod
    def payload_indexes(self, name: str) -> dict[str, str]:
        """The collection's payload indexes {field: KEYWORD_INDEX | INTEGER_INDEX | TEXT_INDEX}
        (qdrant-client's local mode keeps none: it answers {})."""

    @abstractmethod
    def set_metadata(self, name: str, metadata: dict) -> None: ...

    @abstractmethod
    def vector_sizes(self, name: str) -> dict[str, int]: ...

    @abstractmethod
    def count(self, name: str) -> int: ...

    @abstractmethod
    def ids(self, name: str) -> set[int]:
        """Every point id in the collection."""

    @abstractmethod
    def upsert(self, name: str, points: Sequence[PointData]) -> None:
        """Write points (vectors and payload together); durable when this returns."""

    @abstractmethod
    def delete(self, name: str, ids: Iterable[int]) -> None:
        """Remove points by id (unknown ids are ignored); durable when this returns."""

    @abstractmethod
    def retrieve(
        self, name: str, ids: Iterable[int], with_vectors: VectorSelection = False
    ) -> list[StoredPoint]:
        """Points by id, in the order asked; unknown ids are left out. `with_vectors`: all
        named vectors (True), none (False) or the listed names."""

    @abstractmethod
    def set_payloads(self, name: str, payloads: dict[int, dict]) -> None:
        """Merge fields into existing points' payloads ({id: {field: value}}); durable."""

    @abstractmethod
    def add_vector(self, name: str, vector: str, dim: int) -> None:
        """Add (or, at another size, replace) a named cosine vector on an existing collection."""

    @abstractmethod
    def update_vectors(self, name: str, vectors: dict[int, dict[str, np.ndarray]]) -> None:
        """Set named vectors of existing points ({id: {vector: array}}), keeping the rest."""

    @abstractmethod
    def create_index(self, name: str, field: str, kind: str) -> None:
        """Index a payload field for filtering (KEYWORD_INDEX | INTEGER_INDEX); idempotent."""

    @abstractmethod
    def search_batch(
        self,
        name: str,
        vectors: np.ndarray,
        using: str,
        limit: int,
        where: Where | None = None,
        exact: bool = False,
        with_payload: bool | list[str] = True,
        row_where: Sequence[Where | None] | None = None,
    ) -> list[list[Hit]]:
        """Nearest neighbours by cosine for each row of `vectors`, best first.

        `where` filters every row; `row_where[i]` adds conditions for row i only.
        `with_payload`: all of each hit's payload, none, or these fields of it."""

    @abstractmethod
    def score(
        self, name: str, vector: np.ndarray, using: str, ids: Iterable[int]
    ) -> dict[int, float]:
        """The cosine of `vector` with the `using` vector of each of `ids` that has one,
        computed by the store: no stored vector travels (turning a 1280-float vector into
        numpy took 3 of a query's 45 ms for 70 candidates; this takes 0.3)."""

    def search(
        self,
        name: str,
        vector: np.ndarray,
        using: str,
        limit: int,
        where: Where | None = None,
        exact: bool = False,
        with_payload: bool | list[str] = True,
    ) -> list[Hit]:
        batch = np.asarray(vector, dtype=np.float32)[None, :]
        return self.search_batch(name, batch, using, limit, where, exact, with_payload)[0]

    @abstractmethod
    def text_search(
        self, name: str, field: str, text: str, limit: int, where: Where | None = None
    ) -> list[Hit]:
        """Points whose `field` (a TEXT_INDEX) holds the words of `text`, most relevant first
        (BM25 where the store ranks text; else by the share of the words each holds)."""

    def sample(self, name: str, n: int) -> list[StoredPoint]:
        """Some `n` points with their payloads (the first a scroll gives), cheaply: what the
        search reads to learn which fields and tags the collection's points carry."""
        return self.retrieve(name, sorted(self.ids(name))[:n])

    def iter_points(
        self,
        name: str,
        ids: Iterable[int] | None = None,
        with_vectors: VectorSelection = False,
        page: int = 2000,
    ) -> Iterator[StoredPoint]:
        """Points by id (default: all, in id order), fetched a page at a time."""
        wanted = sorted(self.ids(name)) if ids is None else list(ids)
        for start in range(0, len(wanted), page):
            yield from self.retrieve(name, wanted[start : start + page], with_vectors)

    def has_collection(self, name: str) -> bool:
        return name in self.list_collections()

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise StoreError if the store can no longer answer (a store process that died);
        nothing for a store that answers or reports its own errors call by call."""

    def run(self, fn, *args):
        """`fn(self, *args)`, run where the store is, for a function that reads the store
        many times and writes nothing: a StoreProcess runs it in its own process in one call
        (a blended search's several store calls and re-rank: searchctl.query.blended_search).
        `fn` and `args` must pickle (a module-level function)."""
        return fn(self, *args)

    def optimize(self, name: str, force: bool = False) -> None:  # noqa: B027 - optional hook
        """Build search indexes (the embedded store: once enough was written since the last
        build, or `force`); servers do it on their own."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
