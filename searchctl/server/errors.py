"""The project's errors as JSON answers: a 4xx that names the problem, never a traceback."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


def install_error_handlers(app: FastAPI) -> None:
    from classifier.tagger import ClassifierMissing
    from embedder.images import BadImage
    from qdrant import CollectionNotFound, StoreError
    from searchctl.query import ProductNotFound
    from searchctl.server.engine import ApiError

    statuses = [
        (ApiError, None),
        (BadImage, 400),
        (ProductNotFound, 404),
        (CollectionNotFound, 404),
        (ClassifierMissing, 409),
        (StoreError, 503),
        (ValueError, 422),
    ]

    def answer(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    for kind, status in statuses:

        async def handler(request: Request, exc: Exception, status: int | None = status):
            return answer(status or exc.status, str(exc))

        app.add_exception_handler(kind, handler)

    @app.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, exc: StarletteHTTPException):
        message = exc.detail
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = f"{message}: {request.method} {request.url.path}"
        return answer(exc.status_code, str(message))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return answer(422, problems)
