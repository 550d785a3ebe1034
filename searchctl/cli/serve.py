"""`searchctl serve`: the HTTP API and the web page (searchctl.server)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from searchctl.cli.common import (
    DataDir,
    QdrantApiKey,
    QdrantUrl,
    WeightsOpt,
    data_dir_or_default,
    err,
    user_errors,
)

HostOpt = Annotated[
    str,
    typer.Option(help="Address to listen on; 0.0.0.0 opens it to the network (set --api-key)."),
]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]
ServeCollectionsOpt = Annotated[
    list[str] | None,
    typer.Option("--collection", "-c", help="Collection to serve (repeatable) \\[default: all]."),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        envvar="SEARCHCTL_API_KEY",
        help="Require this key (X-API-Key header or Authorization: Bearer) on /collections/...",
        show_default=False,
    ),
]
MaxBodyOpt = Annotated[
    float, typer.Option(min=0.001, help="Largest request body (and fetched photo), in MB.")
]
ConcurrentOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Searches run at once; more wait their turn \\[default: the CPU cores, one more "
        "when the store searches in another process].",
        show_default=False,
    ),
]
ModelCallsOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Backbone calls run side by side; the photos of other searches wait and go "
        "together in the next call (micro-batching).",
    ),
]
StoreProcessOpt = Annotated[
    bool,
    typer.Option(
        "--store-process/--store-in-server",
        help="Open the embedded store in a child process: its searches hold Python's GIL, "
        "and there they run beside the other requests' work (no effect with --qdrant-url).",
    ),
]
PrivateUrlsOpt = Annotated[
    bool,
    typer.Option(
        "--allow-private-urls",
        help="Fetch photo URLs on loopback and private networks too (off: a search engine "
        "must not become a way into its host's network).",
    ),
]


def serve(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    collection: ServeCollectionsOpt = None,
    api_key: ApiKeyOpt = None,
    max_body_mb: MaxBodyOpt = 20.0,
    allow_private_urls: PrivateUrlsOpt = False,
    max_concurrent: ConcurrentOpt = None,
    model_calls: ModelCallsOpt = 2,
    store_process: StoreProcessOpt = True,
    weights: WeightsOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
) -> None:
    """Serve the search over HTTP: a JSON API (OpenAPI docs at /docs) and a web page at /.

    Models load and warm up before /health says ready. Photos arriving together are embedded
    in one model call. The embedded store is one process at a time: while serve holds a
    collection, ingest and the other writers say so; run both at once with a Qdrant server
    (--qdrant-url).
    """
    import uvicorn

    from searchctl.server.app import create_app
    from searchctl.server.engine import ServerSettings

    settings = ServerSettings(
        data_dir=data_dir_or_default(data_dir), qdrant_url=qdrant_url,
        qdrant_api_key=qdrant_api_key, collections=collection, weights=weights,
        api_key=api_key or None, max_body_bytes=int(max_body_mb * 1024 * 1024),
        allow_private_urls=allow_private_urls,
        max_concurrent=max_concurrent,
        model_calls=model_calls, store_process=store_process,
    )  # fmt: skip
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        err.print(f"[yellow]Listening on {host} without --api-key: anyone who can reach it "
                  "can search.[/]")  # fmt: skip
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    with user_errors():
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
