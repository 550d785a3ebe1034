"""A product's payload and its catalog photo, found by id only."""

from __future__ import annotations

import base64
import binascii
import json

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, ValidationError

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
    from ingest.products import uploads_dir

    payload = _payload(request, name, product_id)
    root = catalog_root(request.app.state.engine.store, name).resolve()
    uploads = uploads_dir(request.app.state.settings.data_dir, name).resolve()
    relative = payload.get("image")
    path = (root / relative).resolve() if relative else None
    inside = path is not None and (path.is_relative_to(root) or path.is_relative_to(uploads))
    if not inside or not path.is_file():
        raise ApiError(404, f"product {product_id} has no photo on this server")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})  # a PUT may replace it


class ProductBody(BaseModel):
    """A product to add or replace: its photo (base64 here, or a multipart `file` part beside
    a `labels` field of JSON) and its labels, as a styles.csv row gives them."""

    image_base64: str | None = Field(None, description="The photo's bytes, base64.")
    labels: dict[str, str | int | None] = Field(
        default_factory=dict,
        description="e.g. gender, articleType, baseColour, productDisplayName.",
    )


def _writes_allowed(request: Request) -> None:
    if not request.app.state.settings.api_key:
        raise ApiError(
            403, "writes need an API key: start the server with --api-key (or SEARCHCTL_API_KEY)"
        )


async def _product_body(request: Request) -> tuple[ProductBody, bytes]:
    kind = request.headers.get("content-type", "")
    try:
        if kind.startswith("multipart/form-data"):
            form = await request.form()
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise ApiError(400, "the multipart form has no `file` part with the photo")
            labels = form.get("labels") or "{}"
            body = ProductBody(labels=json.loads(labels if isinstance(labels, str) else "{}"))
            photo = await file.read()
        else:
            raw = await request.body()
            if not raw:
                raise ApiError(400, "the body is empty: send JSON, or a multipart form with a file")
            body = ProductBody.model_validate_json(raw)
            if body.image_base64 is None:
                raise ApiError(422, "image_base64: the product's photo is required")
            photo = base64.b64decode(body.image_base64, validate=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, problems) from None
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON, base64 or form data: {exc}") from None
    if not photo:
        raise ApiError(400, "the photo is empty (0 bytes)")
    return body, photo


@router.put("/{product_id}", summary="Add or replace a product with its photo (API key)")
async def put(request: Request, name: str, product_id: int):
    """Embeds and tags the product as an ingest would (every stage the collection has, with
    its models); the answer says what each stage did. Takes seconds: one write at a time."""
    _writes_allowed(request)
    engine = request.app.state.engine
    collection_or_404(engine, name)
    body, photo = await _product_body(request)
    return await anyio.to_thread.run_sync(_put, engine, name, product_id, body.labels, photo)


def _put(engine, name: str, product_id: int, labels: dict, photo: bytes) -> dict:
    from ingest.products import put_product

    with engine.write_lock:
        context = engine.stage_context(name)
        result = put_product(context, product_id, labels, photo, engine.searchers[name].backbone)
        engine.facets.pop(name, None)
    return result.to_json()


@router.delete("/{product_id}", summary="Delete a product (API key)")
def delete(request: Request, name: str, product_id: int):
    from ingest.products import delete_product

    _writes_allowed(request)
    engine = request.app.state.engine
    collection_or_404(engine, name)
    if not 0 <= product_id < 2**63:
        raise ApiError(422, f"product ids are whole numbers from 0: {product_id}")
    with engine.write_lock:
        if not delete_product(engine.stage_context(name), product_id):
            raise ApiError(404, f"product {product_id} is not in collection {name!r}")
        engine.facets.pop(name, None)
    return {"id": product_id, "deleted": True}
