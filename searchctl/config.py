"""Where things live: the data dir, the store, the collection a command works on."""

from __future__ import annotations

import os
import re
from pathlib import Path

from qdrant import StoreError, VectorStore, open_store

DATA_DIR_ENV = "SEARCHCTL_DATA_DIR"
URL_ENV = "QDRANT_URL"
API_KEY_ENV = "QDRANT_API_KEY"


def default_data_dir() -> Path:
    """$SEARCHCTL_DATA_DIR, else $XDG_DATA_HOME/searchctl, else ~/.local/share/searchctl."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "searchctl"


def connect(data_dir: Path | None, url: str | None, api_key: str | None, **options) -> VectorStore:
    """The store of a command's --data-dir / --qdrant-url; `options` as open_store's."""
    return open_store(data_dir or default_data_dir(), url=url, api_key=api_key, **options)


def collection_name_for(catalog_root: Path) -> str:
    """Default collection for a catalog: its directory name, made safe."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", catalog_root.resolve().name).strip("-.")
    return name or "catalog"


def pick_collection(store: VectorStore, collection: str | None) -> str:
    """The named collection, or the only one there is."""
    if collection:
        return collection
    names = store.list_collections()
    if len(names) == 1:
        return names[0]
    if not names:
        raise StoreError(f"no collections in {store!r}: run `searchctl ingest CATALOG` first")
    raise StoreError(f"several collections ({', '.join(names)}): choose one with --collection")
