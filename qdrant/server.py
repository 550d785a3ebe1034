"""Server store: a Qdrant server or cluster through qdrant-client (gRPC for bulk traffic).

Tests run it against QdrantClient(":memory:"), which speaks the same client API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from qdrant.base import (
    INTEGER_INDEX,
    KEYWORD_INDEX,
    TEXT_INDEX,
    CollectionNotFound,
    Hit,
    PointData,
    StoredPoint,
    StoreError,
    VectorNotAddable,
    VectorSelection,
    VectorStore,
    Where,
    Words,
    payload_groups,
    row_conditions,
    stored_points,
    unit_rows,
)
from qdrant.edge import HNSW_EF, SCROLL_PAGE, check_collection_name

_INDEX_TYPES = {
    KEYWORD_INDEX: qm.PayloadSchemaType.KEYWORD,
    INTEGER_INDEX: qm.PayloadSchemaType.INTEGER,
    TEXT_INDEX: qm.TextIndexParams(type="text", lowercase=True, tokenizer=qm.TokenizerType.WORD),
}


def _filter(where: Where | None) -> qm.Filter | None:
    if not where:
        return None
    return qm.Filter(
        must=[
            qm.FieldCondition(
                key=k,
                match=qm.MatchText(text=v.text) if isinstance(v, Words) else qm.MatchValue(value=v),
            )
            for k, v in where
        ]
    )


class ServerStore(VectorStore):
    def __init__(
        self,
        client: QdrantClient,
        description: str = "qdrant",
        *,
        shards: int | None = None,
        replicas: int | None = None,
        write_consistency: int | None = None,
    ):
        self.client = client
        self.description = description
        # Where the collections this store creates live on a cluster (Qdrant's defaults: None)
        self.placement = {
            "shard_number": shards,
            "replication_factor": replicas,
            "write_consistency_factor": write_consistency,
        }

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, **placement) -> ServerStore:
        """A server or cluster at `url`; `placement` (shards, replicas, write_consistency) is
        what collections made here get."""
        # gRPC pays for upserts and batched searches; REST stays available for the rest.
        client = QdrantClient(url=url, api_key=api_key, prefer_grpc=True, timeout=60)
        try:
            client.get_collections()
        except Exception as exc:
            raise StoreError(f"cannot reach the Qdrant server at {url}: {exc}") from exc
        return cls(client, url, **placement)

    def __repr__(self) -> str:
        return f"ServerStore({self.description!r})"

    def _check(self, name: str) -> str:
        check_collection_name(name)
        if not self.client.collection_exists(name):
            known = ", ".join(self.list_collections()) or "none"
            raise CollectionNotFound(
                f"no collection {name!r} on {self.description} (collections: {known})"
            )
        return name

    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def create_collection(self, name, vectors, metadata, indexes) -> None:
        check_collection_name(name)
        if self.client.collection_exists(name):
            raise StoreError(f"collection {name!r} already exists on {self.description}")
        self.client.create_collection(
            name,
            vectors_config={
                v: qm.VectorParams(size=int(dim), distance=qm.Distance.COSINE)
                for v, dim in vectors.items()
            },
            metadata=metadata,
            **{k: v for k, v in self.placement.items() if v is not None},
        )
        for field, kind in indexes.items():
            self.client.create_payload_index(name, field, _INDEX_TYPES[kind], wait=True)

    def payload_indexes(self, name: str) -> dict[str, str]:
        kinds = {
            qm.PayloadSchemaType.KEYWORD: KEYWORD_INDEX,
            qm.PayloadSchemaType.INTEGER: INTEGER_INDEX,
            qm.PayloadSchemaType.TEXT: TEXT_INDEX,
        }
        schema = self.client.get_collection(self._check(name)).payload_schema or {}
        return {f: kinds[i.data_type] for f, i in schema.items() if i.data_type in kinds}

    def get_metadata(self, name: str) -> dict:
        info = self.client.get_collection(self._check(name))
        return dict(info.config.metadata or {})

    def set_metadata(self, name: str, metadata: dict) -> None:
        # Collection metadata updates merge keys; stale keys are nulled so the record is exact.
        stale = {k: None for k in self.get_metadata(name) if k not in metadata}
        self.client.update_collection(name, metadata={**stale, **metadata})

    def vector_sizes(self, name: str) -> dict[str, int]:
        vectors = self.client.get_collection(self._check(name)).config.params.vectors
        return {k: int(v.size) for k, v in vectors.items()}

    def count(self, name: str) -> int:
        return self.client.count(self._check(name), exact=True).count

    def ids(self, name: str) -> set[int]:
        self._check(name)
        found, offset = set(), None
        while True:
            records, offset = self.client.scroll(
                name, limit=SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False
            )
            found.update(int(r.id) for r in records)
            if offset is None:
                return found

    def sample(self, name: str, n: int) -> list[StoredPoint]:
        records, _ = self.client.scroll(
            self._check(name), limit=n, with_payload=True, with_vectors=False
        )
        return [StoredPoint(int(r.id), r.payload, {}) for r in records]

    def upsert(self, name: str, points: Sequence[PointData]) -> None:
        if not points:
            return
        self.client.upsert(
            name,
            points=[
                qm.PointStruct(
                    id=int(p.id),
                    vector={k: unit_rows(v)[0].tolist() for k, v in p.vectors.items()},
                    payload=p.payload,
                )
                for p in points
            ],
            wait=True,
        )

    def delete(self, name: str, ids: Iterable[int]) -> None:
        wanted = [int(i) for i in ids]
        if wanted:
            self.client.delete(
                self._check(name), points_selector=qm.PointIdsList(points=wanted), wait=True
            )

    def retrieve(
        self, name, ids: Iterable[int], with_vectors: VectorSelection = False
    ) -> list[StoredPoint]:
        wanted = [int(i) for i in ids]
        records = self.client.retrieve(
            self._check(name),
            wanted,
            with_payload=True,
            with_vectors=list(with_vectors) if not isinstance(with_vectors, bool) else with_vectors,
        )
        return stored_points(wanted, records, with_vectors)

    def set_payloads(self, name: str, payloads: dict[int, dict]) -> None:
        if not payloads:
            return
        self.client.batch_update_points(
            self._check(name),
            [
                qm.SetPayloadOperation(set_payload=qm.SetPayload(payload=p, points=ids))
                for p, ids in payload_groups(payloads)
            ],
            wait=True,
        )

    def add_vector(self, name: str, vector: str, dim: int) -> None:
        sizes = self.vector_sizes(name)
        if sizes.get(vector) == int(dim):
            return
        # Qdrant's API cannot add a named vector to an existing collection.
        have = f"it has {vector!r} at {sizes[vector]} dims" if vector in sizes else "it lacks it"
        raise VectorNotAddable(
            f"collection {name!r} on {self.description} needs vector {vector!r} with {dim} dims "
            f"and {have}; a server cannot add or resize a named vector: ingest into a new "
            "collection"
        )

    def update_vectors(self, name: str, vectors: dict[int, dict[str, np.ndarray]]) -> None:
        if not vectors:
            return
        self.client.update_vectors(
            self._check(name),
            points=[
                qm.PointVectors(
                    id=int(i), vector={k: unit_rows(v)[0].tolist() for k, v in named.items()}
                )
                for i, named in vectors.items()
            ],
            wait=True,
        )

    def text_search(self, name, field, text, limit, where=None):
        """The server ranks no text here (BM25 there needs its inference): the points holding
        every word, ranked by how much of the field the words are."""
        conditions = [*(where or []), (field, Words(text))]
        points, _ = self.client.scroll(
            self._check(name), scroll_filter=_filter(conditions), limit=max(limit * 20, 1000),
            with_payload=True, with_vectors=False,
        )  # fmt: skip
        words = text.lower().split()

        def score(payload: dict) -> float:
            held = str(payload.get(field) or "").lower().split()
            return sum(held.count(w) for w in words) / (len(held) or 1)

        hits = [Hit(int(p.id), score(p.payload or {}), p.payload) for p in points]
        return sorted(hits, key=lambda h: (-h.score, h.id))[:limit]

    def create_index(self, name: str, field: str, kind: str) -> None:
        self.client.create_payload_index(self._check(name), field, _INDEX_TYPES[kind], wait=True)

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
        params = qm.SearchParams(hnsw_ef=max(HNSW_EF, limit), exact=exact)
        unit = unit_rows(vectors)
        requests = [
            qm.QueryRequest(
                query=v.tolist(),
                using=using,
                limit=limit,
                filter=_filter(conditions),
                params=params,
                with_payload=with_payload,
            )
            for v, conditions in zip(unit, row_conditions(len(unit), where, row_where))
        ]
        responses = self.client.query_batch_points(self._check(name), requests=requests)
        return [
            [Hit(int(p.id), float(p.score), p.payload if with_payload else None) for p in r.points]
            for r in responses
        ]

    def score(self, name, vector, using, ids):
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return {}
        response = self.client.query_points(
            self._check(name),
            query=unit_rows(vector)[0].tolist(),
            using=using,
            query_filter=qm.Filter(must=[qm.HasIdCondition(has_id=wanted)]),
            limit=len(wanted),
            search_params=qm.SearchParams(exact=True),
            with_payload=False,
        )
        return {int(p.id): float(p.score) for p in response.points}

    def close(self) -> None:
        self.client.close()
