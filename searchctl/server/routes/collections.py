"""Search a collection (a photo, a product id), more like a product, and its facets."""

from __future__ import annotations

import base64
import binascii
import json

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError, field_validator

from searchctl.server.engine import STEPS, ApiError, collection_or_404, photo_data_url

router = APIRouter(prefix="/collections/{name}", tags=["search"])
FACET_FIELDS = ("gender", "masterCategory", "articleType", "baseColour")


class Filters(BaseModel):
    top: int = Field(10, ge=1, le=200, description="Number of hits.")
    offset: int = Field(0, ge=0, le=10_000, description="Hits skipped first (paging).")
    where: dict[str, str | int] = Field(
        default_factory=dict,
        description="Payload filter FIELD: VALUE, all must hold (the --where fields and the "
        "predicted tags, e.g. pred_articleType).",
    )


class SearchBody(Filters):
    """One search: exactly one of image_base64, image_url (JSON) or a `file` part (multipart
    form, with these fields beside it), or id."""

    image_base64: str | None = Field(None, description="The photo's bytes, base64.")
    image_url: str | None = Field(None, description="An http(s) URL of the photo.")
    id: int | None = Field(None, description="Search with a catalog product's stored vector.")
    text: str | None = Field(
        None, description="Words of the product name: alone, ranked by them; beside a photo "
        "or id, only hits whose name holds every word.", max_length=500,
    )
    vector: str | None = Field(None, description="Named vector [default: the backbone's].")
    plain: bool = Field(False, description="Plain cosine: no re-rank by colour and tags.")
    same_type: bool = Field(False, description="Only hits of the photo's predicted articleType.")
    dedupe: bool = Field(False, description="One hit per group of duplicate photos.")
    colour_weight: float | None = Field(None, ge=0)
    tag_weight: float | None = Field(None, ge=0)
    tuned_weight: float | None = Field(None, ge=0)
    candidates: int | None = Field(None, ge=1, le=1000)
    cutout: bool = Field(True, description="Make a photo that is not a studio shot look like one.")
    return_photo: bool = Field(False, description="Add the photo as the engine saw it (JPEG).")

    @field_validator("image_url")
    @classmethod
    def web_address(cls, url: str | None) -> str | None:
        """Only http(s): anything else would reach the search as a path on this machine."""
        from embedder.images import is_url

        if url is not None and not is_url(url):
            raise ValueError(f"must be an http:// or https:// URL, not {url[:100]!r}")
        return url


class RecommendBody(Filters):
    positive: list[int] = Field(..., min_length=1, description="More like these products.")
    negative: list[int] = Field(default_factory=list, description="Less like these.")
    vector: str | None = None


SEARCH_FORMS = {
    "requestBody": {
        "content": {
            "application/json": {"schema": SearchBody.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"},
                                   **SearchBody.model_json_schema()["properties"]},
                }
            },
        },
        "required": True,
    }
}


async def _body(request: Request) -> bytes:
    """The body, read up to the size limit (a chunked body has no Content-Length to check)."""
    limit = request.app.state.settings.max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over {limit:,} bytes (--max-body-mb)")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's form parser reads it from here
    return body


async def _search_body(request: Request) -> tuple[SearchBody, bytes | None]:
    body = await _body(request)
    kind = request.headers.get("content-type", "")
    if not body:
        raise ApiError(400, "the body is empty: send JSON, or a multipart form with a file")
    upload = None
    try:
        if kind.startswith("multipart/form-data"):
            form = await request.form()
            fields = {k: v for k, v in form.items() if k != "file"}
            if "where" in fields:
                fields["where"] = json.loads(fields["where"])
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise ApiError(400, "the multipart form has no `file` part with the photo")
            upload = await file.read()
            if not upload:
                raise ApiError(400, "the uploaded file is empty (0 bytes)")
            return SearchBody.model_validate(fields), upload
        return SearchBody.model_validate_json(body), None
    except ValidationError as exc:
        raise ApiError(422, _problems(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON or form data: {exc}") from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


@router.post("/search", summary="Search by photo (upload, base64, URL) or product id",
             openapi_extra=SEARCH_FORMS)  # fmt: skip
async def search(request: Request, name: str):
    """The `query --json` answer: query, vector, blend, predicted tags, where, hits (id,
    score, payload); `photo` too with return_photo."""
    body, upload = await _search_body(request)
    limiter = request.app.state.engine.limiter
    answer = await anyio.to_thread.run_sync(_search, request, name, body, upload, limiter=limiter)
    return JSONResponse(answer)  # already plain JSON: FastAPI's encoder pass cost a millisecond


def _search(request: Request, name: str, body: SearchBody, upload: bytes | None) -> dict:
    from searchctl.query import SearchRequest, search

    engine, settings = request.app.state.engine, request.app.state.settings
    collection_or_404(engine, name)
    image = upload
    if body.image_base64 is not None:
        try:
            image = base64.b64decode(body.image_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "image_base64 is not valid base64") from None
    given = sum(x is not None for x in (image, body.image_url, body.id))
    if given > 1 or (given == 0 and not (body.text or "").strip()):
        raise ApiError(422, "give one of: a file, image_base64, image_url, id (or only text)")
    where = list(body.where.items())
    searcher = engine.searchers[name]
    query = SearchRequest(
        image=image if image is not None else body.image_url, product_id=body.id,
        top=body.top, offset=body.offset, vector=body.vector, where=where,
        same_type=body.same_type, plain=body.plain, colour_weight=body.colour_weight,
        tag_weight=body.tag_weight, tuned_weight=body.tuned_weight,
        candidates=body.candidates, cutout=body.cutout, text=body.text, dedupe=body.dedupe,
    )  # fmt: skip
    fetch = {"timeout": settings.fetch_timeout, "max_bytes": settings.max_body_bytes,
             "allow_private": settings.allow_private_urls}  # fmt: skip
    result = search(engine.store, name, query, searcher=searcher, fetch=fetch)
    metrics = request.app.state.metrics
    for step in STEPS:
        if step in result.seconds:
            metrics.steps.labels(step).observe(result.seconds[step])
    answer = result.to_json()
    if body.return_photo and result.photo is not None:
        answer["photo"] = photo_data_url(result.photo)
    answer["notes"] = result.notes
    return answer


@router.post("/recommend", summary="More like some products, less like others")
def recommend(request: Request, name: str, body: RecommendBody):
    from searchctl.query import recommend as more_like

    engine = request.app.state.engine
    collection_or_404(engine, name)
    result = more_like(
        engine.store, name, body.positive, body.negative, body.top,
        list(body.where.items()), body.vector, body.offset,
    )  # fmt: skip
    return result.to_json()


@router.get("/facets", summary="Products per label of the page's filter fields")
def facets(request: Request, name: str):
    from searchctl.query import label_counts

    engine = request.app.state.engine
    collection_or_404(engine, name)
    if name not in engine.facets:
        engine.facets[name] = label_counts(engine.store, name, FACET_FIELDS)
    return engine.facets[name]
