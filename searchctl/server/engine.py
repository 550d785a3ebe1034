"""What every request of the server shares: its settings, the warm Engine (store and one
Searcher per collection, its backbone behind a MicroBatcher), the metrics, and ApiError."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

from qdrant import VectorStore
from searchctl.query import ensure_text_index
from searchctl.server.batching import MicroBatcher

STEPS = ("decode", "embed", "search", "rerank")
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5)


def default_concurrency(store_elsewhere: bool) -> int:
    """Searches run at once, the rest waiting their turn: one a core, and one more when the
    store searches in another process (a StoreProcess or a Qdrant server), where a search's
    store half leaves this process's cores to the next. On 2 cores, with the store in the
    server's process, 3 at once answered 8 % fewer a second than 2 (they fight for the GIL);
    with a StoreProcess, 3 answered 4-8 % more (25-s runs of bench/serve_load.py's clients;
    not measured with a Qdrant server, none here)."""
    return (os.cpu_count() or 2) + store_elsewhere


@dataclass
class ServerSettings:
    """Everything `searchctl serve` is told, in one object."""

    data_dir: Path
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    collections: list[str] | None = None  # default: every collection of the store
    weights: Path | None = None
    api_key: str | None = None  # required on /collections/... when set
    max_body_bytes: int = 20 * 1024 * 1024
    fetch_timeout: float = 10.0
    allow_private_urls: bool = False  # photo URLs on loopback or private networks
    max_batch: int = 16
    model_calls: int = 2  # backbone calls run side by side (searchctl.server.batching)
    max_concurrent: int | None = None  # default_concurrency
    # The embedded store in a child process (qdrant.process): its searches hold the GIL.
    store_process: bool = True
    warm: bool = True

    def __post_init__(self) -> None:
        if self.max_concurrent is None:
            elsewhere = bool(self.qdrant_url) or self.store_process
            self.max_concurrent = default_concurrency(elsewhere)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "searchctl_requests", "HTTP requests", ["route", "status"], registry=r
        )
        self.errors = Counter("searchctl_errors", "4xx and 5xx answers", ["route"], registry=r)
        self.latency = Histogram(
            "searchctl_request_seconds", "Request latency", ["route"], registry=r,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.steps = Histogram(
            "searchctl_search_step_seconds", "Seconds in each step of a search", ["step"],
            registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.batch = Histogram(
            "searchctl_embed_batch_rows", "Photos per backbone call (micro-batching)",
            registry=r, buckets=(1, 2, 4, 8, 16, 32),
        )  # fmt: skip


class ApiError(Exception):
    """An answer of `status` with a JSON body naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Engine:
    """The store and one warm Searcher per collection, shared by every request."""

    def __init__(self, settings: ServerSettings, store: VectorStore | None = None):
        self.settings = settings
        self.store = store
        self.searchers: dict = {}
        self.notes: dict[str, str | None] = {}
        self.facets: dict[str, dict] = {}
        self.ready = False
        self.started = time.perf_counter()
        self.ready_seconds: float | None = None
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()  # one write at a time: each runs every stage
        self.batchers: list[MicroBatcher] = []
        self.limiter = None  # an anyio CapacityLimiter of max_concurrent, made in the app's loop

    def open(self) -> None:
        from searchctl.config import connect

        if self.store is None:
            s = self.settings
            own = s.store_process and not s.qdrant_url
            self.store = connect(s.data_dir, s.qdrant_url, s.qdrant_api_key, own_process=own)
        names = self.settings.collections or self.store.list_collections()
        for name in names:
            self.store.count(name)  # an unknown collection or a held store says so now
            ensure_text_index(self.store, name)
        self.names = list(names)

    def warm_up(self, metrics: Metrics) -> None:
        """Load every model and run one search per collection, so that the first request is
        as fast as the next."""
        import numpy as np
        from PIL import Image

        from searchctl.query import SearchRequest, open_searcher, search

        for name in self.names:
            searcher, note = open_searcher(
                self.store, name, with_tags=True, weights=self.settings.weights,
                data_dir=self.settings.data_dir,
            )  # fmt: skip
            searcher.backbone.embed = self._batched(searcher.backbone.embed, metrics)
            self.searchers[name], self.notes[name] = searcher, note
            if self.settings.warm:
                photo = io.BytesIO()
                Image.fromarray(np.full((80, 60, 3), 200, np.uint8)).save(photo, "PNG")
                search(self.store, name, SearchRequest(image=photo.getvalue()), searcher=searcher)
                _ = searcher.finetuned if searcher.tags_from_photo else None
        self.ready = True
        self.ready_seconds = time.perf_counter() - self.started

    def _batched(self, embed, metrics: Metrics) -> MicroBatcher:
        """`embed` behind a MicroBatcher that counts its batches."""

        def counted(rows):
            metrics.batch.observe(len(rows))
            # A lone search's call gets every core; beside other searches each call takes
            # one, as their model calls and Python work share the cores anyway.
            crowded = self.limiter is not None and self.limiter.borrowed_tokens > 1
            return embed(rows, threads=1 if crowded else None)

        batcher = MicroBatcher(counted, self.settings.max_batch, self.settings.model_calls)
        self.batchers.append(batcher)
        return batcher

    def stage_context(self, name: str):
        """What a write to collection `name` runs its stages with: the stages the collection
        has (a product put here never trains a model it lacks)."""
        from ingest.plan import StageContext
        from ingest.products import collection_plan

        s = self.settings
        plan = collection_plan(self.store, name, s.data_dir)
        return StageContext(self.store, name, self.searchers[name].spec, s.data_dir, plan)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def photo_data_url(photo, side: int = 400) -> str:
    """A PIL photo as a JPEG data URL at most `side` pixels a side, for the page to show what
    the engine saw (a phone photo's cut-out as a full-size PNG took 33 ms and 216 kB)."""
    shown = photo.convert("RGB")
    shown.thumbnail((side, side))
    buffer = io.BytesIO()
    shown.save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def collection_or_404(engine: Engine, name: str) -> str:
    if name not in engine.searchers:
        known = ", ".join(engine.searchers) or "none"
        raise ApiError(404, f"no collection {name!r} served here (collections: {known})")
    return name
