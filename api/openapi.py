"""The OpenAPI contract: every route documents the errors it can answer, in the one error shape that
api/errors.py renders, and the bearer-key scheme of the routes that need a key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.deps import depends_on, flat_routes, get_principal


class ErrorDetail(BaseModel):
    type: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx (and the 5xx that would be a bug): {"error": {"type", "message", "param"}}."""

    error: ErrorDetail


DESCRIPTIONS = {
    400: "The body could not be parsed (e.g. a multipart body without a boundary)",
    401: "Missing, invalid or revoked API key",
    403: "The API key lacks the scope this route needs",
    404: "No such resource in the key's project",
    409: "The request conflicts with the resource's current state",
    410: "The model version is archived",
    413: "The request body, a file or a count in it is over its limit",
    415: "The body's media type is not one this route reads",
    422: "A parameter or a body field is invalid (the same error shape, with `param` naming it)",
    429: "The API key is over a per-key concurrency limit; retry after `Retry-After` seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
BODY_METHODS = {"POST", "PUT", "PATCH"}
WRITE_METHODS = BODY_METHODS | {"DELETE"}
# Registry routes resolve `name:N` / `name@alias`, which answers 410 for an archived version.
TAG_EXTRAS = {"models": {410}}
REF = "#/components/schemas/"
SECURITY_SCHEME = {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key (mt_...)"}}


def error_response(status: int) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": f"{REF}ErrorBody"}}}
    doc: dict[str, Any] = {"description": DESCRIPTIONS[status], "content": content}
    if status == 429:
        doc["headers"] = RETRY_AFTER
    return doc


def error_statuses(route: Any) -> set[int]:
    """The 4xx a route can answer, from what it depends on, its path and its methods."""
    statuses: set[int] = set()
    authed = depends_on(route.dependant, get_principal)
    if authed:
        statuses |= {401, 403, 429}
    if _has_params(route.dependant) or route.methods & BODY_METHODS:
        statuses.add(422)
    if "{" in route.path or (authed and route.methods & BODY_METHODS):
        statuses.add(404)  # a path id, or an id in the body (job_id, dataset_id, ...)
        statuses |= {s for tag in route.tags for s in TAG_EXTRAS.get(str(tag), set())}
    if authed and route.methods & WRITE_METHODS:
        statuses.add(409)
    if route.methods & BODY_METHODS:
        statuses |= {400, 413, 415}
    return statuses


def document_errors(app: FastAPI) -> None:
    """Document the error responses of every API route, routers' own declarations first: the
    generated document is completed, so routes added by any router get them too."""
    app.openapi = _completed(app)  # type: ignore[method-assign]


def _completed(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            _add_components(schema)
            for route in flat_routes(app):
                if getattr(route, "include_in_schema", False) and hasattr(route, "dependant"):
                    _complete_route(schema, route)
            _drop_unused_validation_schemas(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _complete_route(schema: dict[str, Any], route: Any) -> None:
    statuses = error_statuses(route)
    authed = depends_on(route.dependant, get_principal)
    for method in route.methods:
        operation = schema["paths"].get(route.path_format, {}).get(method.lower())
        if operation is None:
            continue
        responses = operation.setdefault("responses", {})
        if _is_fastapi_422(responses.get("422")):
            del responses["422"]  # the handler renders validation errors in the error shape
        for status in sorted(statuses):
            responses.setdefault(str(status), error_response(status))
        if authed:
            operation.setdefault("security", [{"bearerAuth": []}])


def _add_components(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEME
    error_schema = ErrorBody.model_json_schema(ref_template=REF + "{model}")
    components.setdefault("schemas", {}).update(error_schema.pop("$defs"))
    components["schemas"]["ErrorBody"] = error_schema


def _is_fastapi_422(doc: dict[str, Any] | None) -> bool:
    return doc is not None and "HTTPValidationError" in str(doc.get("content", ""))


def _drop_unused_validation_schemas(schema: dict[str, Any]) -> None:
    schemas = schema.get("components", {}).get("schemas", {})
    if "HTTPValidationError" not in str(schema["paths"]):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _has_params(dependant: Dependant) -> bool:
    own = dependant.path_params or dependant.query_params or dependant.header_params
    return bool(own or dependant.cookie_params or dependant.body_params) or any(
        _has_params(d) for d in dependant.dependencies
    )
