"""One error shape for every failure: {"error": {"type", "message", "param"}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from platform_core.errors import PlatformError

log = logging.getLogger("medtune.api")

HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    410: "gone_error",
    413: "payload_too_large_error",
    415: "unsupported_media_type_error",
    422: "invalid_request_error",
    503: "service_unavailable_error",
}


def error_response(status: int, type_: str, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message, "param": param}}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(PlatformError)
    async def platform_error(_request: Request, exc: PlatformError) -> JSONResponse:
        return error_response(exc.status_code, exc.type, exc.message, exc.param)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        if param:
            message = f"{param}: {message}"
        return error_response(422, "invalid_request_error", message, param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI turns any failure while reading the body into a 400; the body limit's 413 is the cause.
        cause = exc.__cause__
        if isinstance(cause, PlatformError):
            return error_response(cause.status_code, cause.type, cause.message, cause.param)
        return error_response(exc.status_code, HTTP_TYPES.get(exc.status_code, "api_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The message never echoes request content: it may carry identifiers.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return error_response(
            500, "api_error", "internal error; the request id is in the X-Request-ID header"
        )
