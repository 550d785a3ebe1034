"""Our vector-store layer: one interface, an embedded (Qdrant Edge) and a server implementation."""

from qdrant.base import (
    CollectionNotFound,
    Hit,
    PointData,
    ReadOnlyCollection,
    StoredPoint,
    StoreError,
    StoreLocked,
    VectorNotAddable,
    VectorStore,
    Where,
    Words,
)

__all__ = [
    "CollectionNotFound",
    "Hit",
    "PointData",
    "ReadOnlyCollection",
    "StoreError",
    "StoreLocked",
    "VectorNotAddable",
    "StoredPoint",
    "VectorStore",
    "Where",
    "Words",
    "open_store",
]


def open_store(data_dir, url: str | None = None, api_key: str | None = None) -> VectorStore:
    """The server store when a URL is given, else the embedded store under data_dir."""
    if url:
        from qdrant.server import ServerStore

        return ServerStore.connect(url, api_key=api_key)
    from qdrant.edge import EdgeStore

    return EdgeStore(data_dir)
