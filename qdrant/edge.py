"""Embedded store: one Qdrant Edge shard per collection under <data_dir>/collections/<name>/."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from copy import deepcopy
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from qdrant.base import (
    INTEGER_INDEX,
    KEYWORD_INDEX,
    TEXT_INDEX,
    CollectionNotFound,
    Hit,
    PointData,
    ReadOnlyCollection,
    StoredPoint,
    StoreError,
    StoreLocked,
    VectorSelection,
    VectorStore,
    Where,
    Words,
    payload_groups,
    row_conditions,
    stored_points,
    unit_rows,
)

COLLECTION_FILE = "collection.json"
SHARD_DIR = "shard"
HOLDER_FILE = "holder.json"  # which process has the collection open (for StoreLocked)
SCROLL_PAGE = 10_000
HNSW_EF = 128  # search-time beam; recall@5 checked against exact search in tests/bench
# optimize() rebuilds the HNSW index of the whole collection (about a minute for 44k points
# on 2 cores), so it waits until this share of the points was written since the last build;
# until then the written points are searched exactly, beside the index (a few ms more).
REINDEX_SHARE = 0.10
UNINDEXED_KEY = "unindexed"  # in the collection's record: ids written since the last build
# In the record from a process's first write until its optimize() records what it wrote: found
# by a later process, it means a run ended (killed) with writes nobody recorded, and the next
# optimize() builds the index.
WRITING_KEY = "writing"
# Payload fields of hits kept in memory per collection and field selection (ReadCache); past
# this many points the cache starts afresh (the re-rank's 15 tag fields: 0.7 kB a point).
PAYLOAD_CACHE_POINTS = 250_000
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

_INDEX_TYPES = {
    KEYWORD_INDEX: qe.PayloadSchemaType.Keyword,
    INTEGER_INDEX: qe.PayloadSchemaType.Integer,
    TEXT_INDEX: qe.TextIndexParams(
        lowercase=True, scoring=qe.TextScoringParams(type=qe.TextScoringType.Bm25)
    ),
}


def check_collection_name(name: str) -> str:
    if not _VALID_NAME.match(name):
        raise StoreError(
            f"invalid collection name {name!r}: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    return name


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _writable(path: Path) -> bool:
    """This process may change the shard's files (its directory and the files in it)."""
    if not os.access(path, os.W_OK | os.X_OK):
        return False
    return all(os.access(f, os.W_OK) for f in path.rglob("*") if f.is_file())


def _filter(where: Where | None) -> qe.Filter | None:
    if not where:
        return None
    return qe.Filter(
        must=[
            qe.FieldCondition(
                key=k, match=qe.MatchText(v.text) if isinstance(v, Words) else qe.MatchValue(v)
            )
            for k, v in where
        ]
    )


class ReadCache:
    """What searches read again and again from an embedded collection, kept in memory: the
    payload fields a search asks for (by point) and sample()'s points. Only one process can
    open an embedded collection (its WAL lock), so this process's own writes are all the
    changes there are: each write drops what it touched (`written`), after the write. A read
    that raced a write is not kept: every write bumps the collection's generation, and a read
    is kept only if the generation it started under is still current.

    Why: Qdrant Edge holds the GIL for a whole query, payload conversion included. 100
    candidates with the re-rank's 15 tag fields took 6.5 ms against 3.2 ms without
    payload; on a busy server those searches were 44 % of the time the GIL was held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation: dict[str, int] = {}
        self.payloads: dict[tuple[str, tuple[str, ...]], dict[int, dict]] = {}
        self.samples: dict[tuple[str, int], tuple[int, list[StoredPoint]]] = {}

    @staticmethod
    def cacheable(with_payload) -> bool:
        """A selection of top-level fields (True, False and nested paths go to the store)."""
        return not isinstance(with_payload, bool) and all("." not in f for f in with_payload)

    def written(self, name: str, ids: Iterable[int]) -> None:
        """Points `ids` of `name` were written."""
        with self.lock:
            self.generation[name] = self.generation.get(name, 0) + 1
            for (collection, _), cached in self.payloads.items():
                if collection == name:
                    for i in ids:
                        cached.pop(int(i), None)
            for key in [k for k in self.samples if k[0] == name]:
                del self.samples[key]

    def fields(self, name: str, fields: tuple[str, ...], ids: set[int], fetch) -> dict[int, dict]:
        """id -> its payload's `fields` (a copy) for the `ids` that exist; `fetch(ids)` reads
        the points not cached (records with .id and .payload)."""
        with self.lock:
            started = self.generation.get(name, 0)
            cached = self.payloads.setdefault((name, fields), {})
            found = {i: cached[i] for i in ids if i in cached}
        missing = [i for i in ids if i not in found]
        if missing:
            fresh = {}
            for record in fetch(missing):
                payload = record.payload or {}  # made anew on each access
                fresh[int(record.id)] = {k: payload[k] for k in fields if k in payload}
            with self.lock:
                if self.generation.get(name, 0) == started:
                    if len(cached) + len(fresh) > PAYLOAD_CACHE_POINTS:
                        cached.clear()
                    cached.update(fresh)
            found.update(fresh)
        return {i: dict(payload) for i, payload in found.items()}

    def with_fields(
        self, name: str, fields: tuple[str, ...], found: list[list[Hit]], fetch
    ) -> list[list[Hit]]:
        """Hits of a search made without payload, each with its payload's `fields` (fetch:
        as in `fields`)."""
        kept = self.fields(name, fields, {h.id for hits in found for h in hits}, fetch)
        return [[Hit(h.id, h.score, kept.get(h.id)) for h in hits] for hits in found]

    def forget(self) -> None:
        """Drop everything kept (after a write whose points are not known)."""
        with self.lock:
            for name in {name for name, _ in self.payloads} | {n for n, _ in self.samples}:
                self.generation[name] = self.generation.get(name, 0) + 1
            self.payloads.clear()
            self.samples.clear()

    def sample(self, name: str, n: int, read) -> list[StoredPoint]:
        """`read()`'s points (sample(name, n)), read again only after a write."""
        with self.lock:
            started = self.generation.get(name, 0)
            kept = self.samples.get((name, n))
        if kept is None or kept[0] != started:
            kept = (started, read())
            with self.lock:
                if self.generation.get(name, 0) == started:
                    self.samples[(name, n)] = kept
        return [StoredPoint(p.id, dict(p.payload or {}), {}) for p in kept[1]]


class EdgeStore(VectorStore):
    """Qdrant's in-process engine. One process at a time may open a collection."""

    def __init__(self, data_dir: str | Path, holder_pid: int | None = None):
        """`holder_pid`: the process named as holding the collections (default this one; a
        StoreProcess names its parent, the one to stop)."""
        self.root = Path(data_dir).expanduser() / "collections"
        self._holder_pid = holder_pid or os.getpid()
        self._run = os.urandom(8).hex()  # this store's WRITING_KEY mark
        self._shards: dict[str, qe.EdgeShard] = {}
        # Collections this process may not write to: opened from a temporary copy (_shard).
        self._copies: dict[str, Path] = {}
        self._configs: dict[str, tuple[tuple, dict]] = {}  # name: (file stamp, record)
        self._written: dict[str, set[int]] = {}  # ids written since optimize() last looked
        self._reads = ReadCache()

    def __repr__(self) -> str:
        return f"EdgeStore({str(self.root.parent)!r})"

    # -- collections -------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / check_collection_name(name)

    def _config(self, name: str) -> dict:
        """The collection's record, read again only when its file changed: every search asks
        for it, and reading it made 6 % of a busy server's time."""
        path = self._dir(name) / COLLECTION_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            stat = None
        if stat is None or not path.is_file():
            known = ", ".join(self.list_collections()) or "none"
            raise CollectionNotFound(
                f"no collection {name!r} in {self.root.parent} (collections: {known})"
            )
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._configs.get(name)
        if cached is None or cached[0] != stamp:
            cached = self._configs[name] = (stamp, json.loads(path.read_text()))
        return deepcopy(cached[1])

    def list_collections(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / COLLECTION_FILE).is_file())

    def create_collection(self, name, vectors, metadata, indexes) -> None:
        directory = self._dir(name)
        if (directory / COLLECTION_FILE).exists():
            self._shard(name)  # another process making it right now: StoreLocked says so
            raise StoreError(f"collection {name!r} already exists in {self.root.parent}")
        self._make_dir(directory)
        config = qe.EdgeConfig(
            vectors={
                v: qe.EdgeVectorParams(size=int(dim), distance=qe.Distance.Cosine)
                for v, dim in vectors.items()
            },
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000),
        )
        try:
            shard = qe.EdgeShard.create(str(directory / SHARD_DIR), config)
        except Exception as exc:
            raise self._open_error(name, directory / SHARD_DIR, exc) from exc
        for field, kind in indexes.items():
            shard.update(qe.UpdateOperation.create_field_index(field, _INDEX_TYPES[kind]))
        shard.flush()
        self._shards[name] = shard
        self._hold(name)
        # Written last: a collection exists once its config file does.
        _write_json_atomic(
            directory / COLLECTION_FILE,
            {"vectors": {k: int(v) for k, v in vectors.items()}, "metadata": metadata},
        )

    def _shard(self, name: str) -> qe.EdgeShard:
        shard = self._shards.get(name)
        if shard is None:
            self._config(name)
            path = self._dir(name) / SHARD_DIR
            if not _writable(path):
                path = self._read_only_copy(name, path)
            try:
                shard = qe.EdgeShard.load(str(path))
            except Exception as exc:
                raise self._open_error(name, path, exc) from exc
            self._shards[name] = shard
            if name not in self._copies:
                self._hold(name)
        return shard

    def _hold(self, name: str) -> None:
        """Say which process holds the collection, for the message another one gets."""
        import sys
        import time

        command = " ".join(sys.argv)[:200]
        holder = {"pid": self._holder_pid, "command": command, "since": time.time()}
        with contextlib.suppress(OSError):  # the message would only say less
            _write_json_atomic(self._dir(name) / HOLDER_FILE, holder)

    def _holder(self, name: str) -> str:
        import time

        try:
            holder = json.loads((self._dir(name) / HOLDER_FILE).read_text())
        except (OSError, ValueError):
            return "another searchctl process"
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.get("since", 0)))
        return f"process {holder.get('pid')} ({holder.get('command')}, since {since})"

    def _read_only_copy(self, name: str, path: Path) -> Path:
        """Qdrant Edge opens a shard for writing (its WAL, its mmaps) even to read it: a
        collection this process may not write to (a read-only mount, another user's files) is
        searched from a temporary copy, and every write to it is refused (_for_writing)."""
        import shutil
        import tempfile

        copy = Path(tempfile.mkdtemp(prefix=f"searchctl-{name}-"))
        shutil.copytree(path, copy / SHARD_DIR, copy_function=shutil.copyfile)
        for folder, _, files in os.walk(copy):  # copytree kept the folders' read-only modes
            os.chmod(folder, 0o700)
            for file in files:
                os.chmod(os.path.join(folder, file), 0o600)
        self._copies[name] = copy
        return copy / SHARD_DIR

    def _for_writing(self, name: str) -> qe.EdgeShard:
        shard = self._shard(name)
        if name in self._copies:
            raise ReadOnlyCollection(
                f"collection {name!r} is read-only here (no write permission on "
                f"{self._dir(name)}): it can be searched, not changed. Copy the data dir "
                "somewhere writable, or fix its permissions."
            )
        return shard

    def _open_error(self, name: str, path: Path, exc: Exception) -> StoreError:
        """Qdrant Edge's error opening a shard as ours; its text is all it gives to tell a
        shard another process holds (its WAL lock) from other failures."""
        if "WouldBlock" in str(exc):
            return StoreLocked(
                f"collection {name!r} is open in another searchctl process, "
                f"{self._holder(name)}; the embedded store allows one at a time ({path}). "
                "Wait for it to finish or stop it, or use a Qdrant server (--qdrant-url) to "
                "run a server and writers at once."
            )
        return StoreError(f"cannot open collection {name!r} at {path}: {exc}")

    def _make_dir(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data dir {self.root.parent}: {exc.strerror} ({exc.filename}). "
                "Choose another with --data-dir or SEARCHCTL_DATA_DIR."
            ) from exc

    def payload_indexes(self, name: str) -> dict[str, str]:
        kinds = {str(t): k for k, t in _INDEX_TYPES.items() if k != TEXT_INDEX}
        schema = self._shard(name).info().payload_schema
        return {
            field: TEXT_INDEX if info.params is not None else kinds[str(info.data_type)]
            for field, info in schema.items()
            if info.params is not None or str(info.data_type) in kinds
        }

    def get_metadata(self, name: str) -> dict:
        return self._config(name)["metadata"]

    def set_metadata(self, name: str, metadata: dict) -> None:
        self._for_writing(name)
        config = self._config(name)
        config["metadata"] = metadata
        _write_json_atomic(self._dir(name) / COLLECTION_FILE, config)

    def vector_sizes(self, name: str) -> dict[str, int]:
        return self._config(name)["vectors"]

    # -- points ------------------------------------------------------------------------------
    def count(self, name: str) -> int:
        return self._shard(name).count(qe.CountRequest(exact=True))

    def ids(self, name: str) -> set[int]:
        shard, found, offset = self._shard(name), set(), None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset, limit=SCROLL_PAGE, with_payload=False, with_vector=False
                )
            )
            found.update(int(r.id) for r in records)
            if offset is None:
                return found

    def sample(self, name: str, n: int) -> list[StoredPoint]:
        def read() -> list[StoredPoint]:
            records, _ = self._shard(name).scroll(
                qe.ScrollRequest(limit=n, with_payload=True, with_vector=False)
            )
            return [StoredPoint(int(r.id), r.payload, {}) for r in records]

        return self._reads.sample(name, n, read)

    def upsert(self, name: str, points: Sequence[PointData]) -> None:
        if not points:
            return
        shard = self._for_writing(name)
        ids = [int(p.id) for p in points]
        self._note_written(name, ids)
        shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(
                        int(p.id),
                        {k: unit_rows(v)[0].tolist() for k, v in p.vectors.items()},
                        p.payload,
                    )
                    for p in points
                ]
            )
        )
        self._reads.written(name, ids)

    def delete(self, name: str, ids: Iterable[int]) -> None:
        wanted = [int(i) for i in ids]
        if not wanted:
            return
        shard = self._for_writing(name)
        self._note_written(name, wanted)
        shard.update(qe.UpdateOperation.delete_points(wanted))
        self._reads.written(name, wanted)
        shard.flush()

    def retrieve(
        self, name, ids: Iterable[int], with_vectors: VectorSelection = False
    ) -> list[StoredPoint]:
        wanted = [int(i) for i in ids]
        records = self._shard(name).retrieve(
            wanted, True, list(with_vectors) if not isinstance(with_vectors, bool) else with_vectors
        )
        return stored_points(wanted, records, with_vectors)

    def set_payloads(self, name: str, payloads: dict[int, dict]) -> None:
        shard = self._for_writing(name)
        self._note_written(name, payloads)
        for payload, ids in payload_groups(payloads):
            shard.update(qe.UpdateOperation.set_payload(ids, payload))
        self._reads.written(name, payloads)
        shard.flush()

    def add_vector(self, name: str, vector: str, dim: int) -> None:
        config = self._config(name)
        shard = self._for_writing(name)
        if vector in config["vectors"]:
            if config["vectors"][vector] == int(dim):
                return
            shard.update(qe.UpdateOperation.delete_vector_name(vector))
        shard.update(qe.UpdateOperation.create_dense_vector(vector, int(dim), qe.Distance.Cosine))
        shard.flush()
        config["vectors"][vector] = int(dim)
        _write_json_atomic(self._dir(name) / COLLECTION_FILE, config)

    def update_vectors(self, name: str, vectors: dict[int, dict[str, np.ndarray]]) -> None:
        if not vectors:
            return
        self._note_written(name, vectors)
        self._for_writing(name).update(
            qe.UpdateOperation.update_vectors(
                [
                    qe.PointVectors(int(i), {k: unit_rows(v)[0].tolist() for k, v in named.items()})
                    for i, named in vectors.items()
                ]
            )
        )

    def create_index(self, name: str, field: str, kind: str) -> None:
        shard = self._for_writing(name)
        shard.update(qe.UpdateOperation.create_field_index(field, _INDEX_TYPES[kind]))
        shard.flush()

    def search_batch(
        self,
        name,
        vectors,
        using,
        limit,
        where=None,
        exact=False,
        with_payload=True,
        row_where=None,
    ):
        shard = self._shard(name)
        params = qe.SearchParams(hnsw_ef=max(HNSW_EF, limit), exact=exact)
        unit = unit_rows(vectors)
        cached = ReadCache.cacheable(with_payload)
        requests = [
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(v.tolist(), using=using),
                filter=_filter(conditions),
                with_payload=False if cached else with_payload,
                params=params,
            )
            for v, conditions in zip(unit, row_conditions(len(unit), where, row_where))
        ]
        results = shard.query_batch(qe.QueryBatchRequest(requests))
        found = [[Hit(int(p.id), float(p.score), p.payload) for p in hits] for hits in results]
        if not cached:
            return found
        fetch = lambda missing: shard.retrieve(missing, True, False)  # noqa: E731
        return self._reads.with_fields(name, tuple(with_payload), found, fetch)

    def text_search(self, name, field, text, limit, where=None):
        request = qe.QueryRequest(
            query=qe.TextQuery(field, text), limit=limit, filter=_filter(where), with_payload=True
        )
        return [Hit(int(p.id), float(p.score), p.payload) for p in self._shard(name).query(request)]

    def score(self, name, vector, using, ids):
        wanted = {int(i) for i in ids}
        if not wanted:
            return {}
        request = qe.QueryRequest(
            limit=len(wanted),
            query=qe.Query.Nearest(unit_rows(vector)[0].tolist(), using=using),
            filter=qe.Filter(must=[qe.HasIdCondition(wanted)]),
            with_payload=False,
            params=qe.SearchParams(exact=True),
        )
        return {int(p.id): float(p.score) for p in self._shard(name).query(request)}

    def _note_written(self, name: str, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids]
        if ids and name not in self._written:  # this process's first write since optimize()
            config = self._config(name)
            if config.get(WRITING_KEY) != self._run:
                config[WRITING_KEY] = self._run
                _write_json_atomic(self._dir(name) / COLLECTION_FILE, config)
        if ids:
            self._written.setdefault(name, set()).update(ids)

    def optimize(self, name: str, force: bool = False) -> None:
        """Build the search index once REINDEX_SHARE of the points were written since the last
        build (or `force`); else remember which were (in the collection's record)."""
        shard = self._for_writing(name)
        config = self._config(name)
        recorded = set(config.get(UNINDEXED_KEY, []))
        pending = recorded | self._written.pop(name, set())
        writer = config.pop(WRITING_KEY, None)
        unrecorded = writer not in (None, self._run)  # a run that ended before recording
        if force or unrecorded or len(pending) >= REINDEX_SHARE * max(self.count(name), 1):
            shard.optimize()
            pending = set()
        if pending != recorded or writer is not None:
            config[UNINDEXED_KEY] = sorted(pending)
            _write_json_atomic(self._dir(name) / COLLECTION_FILE, config)

    def flush(self) -> None:
        for name, shard in self._shards.items():
            if name not in self._copies:
                shard.flush()

    def close(self) -> None:
        import shutil

        for name, shard in self._shards.items():
            shard.close()
            if name not in self._copies:
                (self._dir(name) / HOLDER_FILE).unlink(missing_ok=True)
        self._shards.clear()
        for copy in self._copies.values():
            shutil.rmtree(copy, ignore_errors=True)
        self._copies.clear()
