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


def open_store(
    data_dir,
    url: str | None = None,
    api_key: str | None = None,
    own_process: bool = False,
    **placement,
) -> VectorStore:
    """The server store when a URL is given, else the embedded store under data_dir (in a
    child process of its own if `own_process`: see qdrant.process). `placement` (shards,
    replicas, write_consistency: see ServerStore) is where the collections a server store
    creates live on a cluster."""
    if url:
        from qdrant.server import ServerStore

        return ServerStore.connect(url, api_key=api_key, **placement)
    given = [name for name, value in placement.items() if value is not None]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise StoreError(
            f"{options}: where a collection lives on a Qdrant cluster; the embedded store has "
            "no shards or replicas (add --qdrant-url)"
        )
    if own_process:
        from qdrant.process import StoreProcess

        return StoreProcess(data_dir)
    from qdrant.edge import EdgeStore

    return EdgeStore(data_dir)
