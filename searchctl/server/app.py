"""`searchctl serve`: the search library over HTTP (FastAPI), with a web page at `/`.

Every search goes through searchctl.query.search(), the call the `query` command makes; the
app holds one warm Searcher per collection, its backbone behind a MicroBatcher so that photos
arriving together are embedded in one model call.
"""

from __future__ import annotations

import hmac
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from qdrant import VectorStore
from searchctl.server.engine import Engine, Metrics, ServerSettings
from searchctl.server.errors import install_error_handlers
from searchctl.server.routes import collections, page, products, system


def create_app(settings: ServerSettings, store: VectorStore | None = None) -> FastAPI:
    """The app; `store` for tests (default: the settings' store). Models load and warm up
    before the app answers anything but /health (503 until then)."""
    engine, metrics = Engine(settings, store), Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import anyio

        engine.open()
        engine.limiter = anyio.CapacityLimiter(settings.max_concurrent)
        await anyio.to_thread.run_sync(engine.warm_up, metrics)
        yield
        engine.close()

    app = FastAPI(
        title="searchctl",
        description="Visual search and auto-tagging for fashion catalogs: search a collection "
        "by photo, product id or words; more like a product; its payload and photo.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.engine, app.state.metrics, app.state.settings = engine, metrics, settings
    for router in (system.router, collections.router, products.router, page.router):
        app.include_router(router)
    _install_guards(app, settings, metrics)
    return app


def _version() -> str:
    from searchctl import __version__

    return __version__


def _install_guards(app: FastAPI, settings: ServerSettings, metrics: Metrics) -> None:
    """Body size limit, API key, metrics of every request, errors as JSON."""
    install_error_handlers(app)
    app.add_middleware(Guard, settings=settings, metrics=metrics)


class Guard:
    """Refuses what must not reach a route (a body over the limit, a missing API key) and
    counts every request. Plain ASGI: Starlette's BaseHTTPMiddleware (`@app.middleware`)
    was about 10 % of the time a lone search held the GIL (py-spy --gil)."""

    def __init__(self, app, settings: ServerSettings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope)
        status = 500  # an error no handler answered

        async def sent(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            problem = _refusal(request, self.settings)
            if problem is not None:
                answer = JSONResponse({"error": problem[1]}, status_code=problem[0])
                await answer(scope, receive, sent)
            else:
                await self.app(scope, receive, sent)
        finally:
            route = _route_label(request)
            self.metrics.requests.labels(route, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(route).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route_label(request: Request) -> str:
    """The route's template, not its path: metrics keep one series per route."""
    parts = request.url.path.strip("/").split("/")
    if parts[0] == "collections" and len(parts) >= 3:
        label = ["collections", "{name}", parts[2]]
        if parts[2] == "products":
            label += ["{id}", *parts[4:5]]
        return "/" + "/".join(label)
    return "/" + parts[0]


def _refusal(request: Request, settings: ServerSettings) -> tuple[int, str] | None:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_body_bytes:
        return 413, (f"the body is {int(length):,} bytes; at most {settings.max_body_bytes:,} "
                     "(--max-body-mb)")  # fmt: skip
    if settings.api_key and request.url.path.startswith("/collections"):
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:]
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            return 401, "an API key is required: X-API-Key header or Authorization: Bearer"
    return None
