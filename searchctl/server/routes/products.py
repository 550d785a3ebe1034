"""A product's payload and its catalog photo, found by id only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from searchctl.server.engine import ApiError, collection_or_404

router = APIRouter(prefix="/collections/{name}/products", tags=["products"])


def _payload(request: Request, name: str, product_id: int) -> dict:
    engine = request.app.state.engine
    collection_or_404(engine, name)
    if not 0 <= product_id < 2**63:
        raise ApiError(422, f"product ids are whole numbers from 0: {product_id}")
    found = engine.store.retrieve(name, [product_id])
    if not found:
        raise ApiError(404, f"product {product_id} is not in collection {name!r}")
    return found[0].payload or {}


@router.get("/{product_id}", summary="A product's payload: labels and predicted tags")
def product(request: Request, name: str, product_id: int):
    return {"id": product_id, "payload": _payload(request, name, product_id)}


@router.get("/{product_id}/image", summary="A product's catalog photo")
def image(request: Request, name: str, product_id: int):
    """The path comes from the stored payload, never from the request, and must lie inside
    the collection's catalog directory."""
    from embedder.collection import catalog_root

    payload = _payload(request, name, product_id)
    root = catalog_root(request.app.state.engine.store, name).resolve()
    relative = payload.get("image")
    path = (root / relative).resolve() if relative else None
    if path is None or not path.is_relative_to(root) or not path.is_file():
        raise ApiError(404, f"product {product_id} has no photo on this server")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})
