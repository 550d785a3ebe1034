"""Health, Prometheus metrics and the collections served."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from qdrant import StoreError

router = APIRouter(tags=["system"])


@router.get("/health", summary="Ready when every model is loaded and warm (503 until then)")
def health(request: Request):
    engine = request.app.state.engine
    if not engine.ready:
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        engine.store.check()
    except StoreError as exc:
        return JSONResponse({"status": "store unavailable", "error": str(exc)}, status_code=503)
    return {"status": "ready", "collections": list(engine.searchers),
            "ready_seconds": round(engine.ready_seconds, 2)}  # fmt: skip


@router.get("/metrics", summary="Prometheus metrics: requests, errors, latency of each step")
def metrics(request: Request):
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)  # fmt: skip


@router.get("/collections", summary="The collections served: counts, vectors, embedder, models")
def collections(request: Request):
    from classifier.summary import models_summary

    engine = request.app.state.engine
    store, data_dir = engine.store, request.app.state.settings.data_dir
    with engine.lock:
        return {
            "collections": [
                {
                    "name": name,
                    "points": store.count(name),
                    "vectors": store.vector_sizes(name),
                    "embedder": store.get_metadata(name).get("embedder"),
                    "models": models_summary(data_dir, name),
                    "note": engine.notes.get(name),
                }
                for name in engine.searchers
            ]
        }
