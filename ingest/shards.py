"""`ingest --shard I/N`: N processes or machines each embed a deterministic 1/N of a catalog
into one collection; the stages that learn from the whole catalog run once after all.

A product belongs to shard `hash(id) % N` (a stable hash, the same on every machine), so the
N runs share nothing but the collection, and point ids are product ids: a shard run again
writes the same points. A sharded run does the per-photo stages (backbone, colour) for its
products only, and brings its part of the collection in step with the catalog (its deletions,
relabels, new photos). The collection records how many shards the latest round has and each
shard's state in metadata keys of their own (a Qdrant server merges metadata keys, so shards
finishing together do not overwrite each other); the stages that learn from the whole catalog
(autoencoder, classifier, taggers) refuse to run until every shard is done.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from qdrant.base import VectorStore

ROUND_KEY = "ingest_shards"  # N of the latest sharded round
RUNNING, DONE = "running", "done"


@dataclass(frozen=True)
class Shard:
    index: int  # 0 .. count - 1
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"shard {self.index}/{self.count}: I/N needs N >= 1 and 0 <= I < N (shards are "
                "numbered from 0, as a Kubernetes indexed Job or `seq 0 N-1` number them)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' -> Shard(I, N)."""
        index, slash, count = text.partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"--shard {text!r}: expected I/N, for example 0/4")
        return cls(int(index), int(count))

    def holds(self, product_id: int) -> bool:
        return shard_of(product_id, self.count) == self.index

    @property
    def key(self) -> str:
        return f"ingest_shard_{self.index}_of_{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(product_id: int, count: int) -> int:
    """The shard of a product among `count`: a stable hash of its id, so that catalogs whose
    ids share a stride (all even, all multiples of 10) still split evenly."""
    digest = hashlib.blake2b(str(int(product_id)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_marks(shard: Shard, state: str) -> dict:
    """The metadata keys that record the shard's state (RUNNING or DONE) and the round's
    shard count (a collection a shard makes is born with them)."""
    return {ROUND_KEY: shard.count, shard.key: state}


def mark(store: VectorStore, collection: str, shard: Shard, state: str) -> None:
    """Record the shard's state in an existing collection."""
    metadata = store.get_metadata(collection)
    store.set_metadata(collection, {**metadata, **shard_marks(shard, state)})


def unfinished_shards(store: VectorStore, collection: str) -> list[tuple[Shard, str]]:
    """The latest round's shards that are not done, with their state (running, not started)."""
    metadata = store.get_metadata(collection)
    count = metadata.get(ROUND_KEY)
    if not count:
        return []
    shards = [Shard(i, int(count)) for i in range(int(count))]
    states = [(s, metadata.get(s.key) or "not started") for s in shards]
    return [(s, state) for s, state in states if state != DONE]


class ShardsMissing(ValueError):
    """A stage that learns from the whole catalog, asked for before every shard is in."""


def check_every_shard_done(store: VectorStore, collection: str, what: str) -> None:
    """Raise ShardsMissing, naming the shards and their state, unless every shard of the
    collection's latest round is done (or it was never sharded)."""
    if not store.has_collection(collection):
        return
    missing = unfinished_shards(store, collection)
    if not missing:
        return
    count = missing[0][0].count
    listed = ", ".join(f"{s} ({state})" for s, state in missing)
    raise ShardsMissing(
        f"collection {collection!r} is being ingested in {count} shards and these are not "
        f"done: {listed}. {what} learns from the whole catalog and waits for every shard: "
        f"finish them with `searchctl ingest CATALOG --shard I/{count}` (a shard run again "
        "does only what is left), then run this again."
    )
