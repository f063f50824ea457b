"""One error shape for every failure: {"error": {"type", "message", "param"}}."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from platform_core.errors import PlatformError, TooManyRequests

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
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


def error_response(
    status: int,
    type_: str,
    message: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def platform_response(exc: PlatformError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    return error_response(exc.status_code, exc.type, exc.message, exc.param, headers)


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method some route answers at `path` (Starlette's own 405 names only the first route's)."""
    from api.deps import flat_routes

    methods: set[str] = set()
    for route in flat_routes(app):
        regex = getattr(route, "path_regex", None)
        if getattr(route, "methods", None) and regex is not None and regex.match(path):
            methods |= route.methods
    return methods


def routing_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """404/405 from routing. The console's static mount at "/" catches every path the API routes do
    not take whole, so a wrong method on an API path reaches it: answer 405 with the full `Allow`
    (RFC 9110); a path no route knows is a 404; a wrong method on a console page allows GET, HEAD."""
    allowed = allowed_methods(request.app, request.url.path)
    if allowed and request.method not in allowed:
        allow = ", ".join(sorted(allowed))
        return error_response(
            405, "invalid_request_error", f"{request.method} is not allowed here; use {allow}",
            headers={"Allow": allow},
        )  # fmt: skip
    api_path = request.url.path.startswith(("/v1/", "/healthz", "/readyz", "/docs", "/openapi.json"))
    if exc.status_code == 405 and not api_path:
        return error_response(405, "invalid_request_error", "the console serves GET and HEAD only",
                              headers={"Allow": "GET, HEAD"})  # fmt: skip
    if exc.status_code == 405:
        return error_response(404, "not_found_error", f"no route for {request.url.path}")
    return error_response(exc.status_code, HTTP_TYPES[exc.status_code], str(exc.detail))


def install(app: FastAPI) -> None:
    @app.exception_handler(PlatformError)
    async def platform_error(_request: Request, exc: PlatformError) -> JSONResponse:
        return platform_response(exc)

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
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI turns any failure while reading the body into a 400; the body limit's 413 is the cause.
        cause = exc.__cause__
        if isinstance(cause, PlatformError):
            return platform_response(cause)
        if exc.status_code in (404, 405):
            return routing_error(request, exc)
        type_ = HTTP_TYPES.get(exc.status_code, "api_error")
        return error_response(exc.status_code, type_, str(exc.detail), headers=exc.headers)

    @app.exception_handler(DataError)
    async def unstorable(_request: Request, _exc: DataError) -> JSONResponse:
        # The database refused a value the schema let through (a NUL character in a string, a number
        # out of its column's range): the request's fault, so a 422, never a 500.
        return error_response(
            422, "invalid_request_error", "a value in the request cannot be stored (e.g. a NUL character)"
        )

    @app.exception_handler(ClientDisconnect)
    async def client_left(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # Nobody reads this answer; handling it here keeps a dropped upload out of the error log.
        return error_response(400, "invalid_request_error", "the client closed the connection mid-request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The message never echoes request content: it may carry identifiers.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return error_response(
            500, "api_error", "internal error; the request id is in the X-Request-ID header"
        )
