"""Typed dependencies: the app state, a request-scoped session, the principal and its scopes; the
routes' dependency graph (which need a key; the key checked first)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import fastapi.routing
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from sqlalchemy.orm import Session

from api.state import AppState
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal, authenticate, record_audit
from platform_core.db.session import unit_of_work
from platform_core.errors import UnsupportedMediaType
from platform_core.storage import ObjectStore


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.medtune
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(request: Request, state: StateDep) -> Iterator[Session]:
    # The request owns the transaction: services flush, this commits; tasks go out after the commit.
    with unit_of_work(state.sessions_for(request.method), state.dispatch) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_store(state: StateDep) -> ObjectStore:
    return state.store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_principal(request: Request, state: StateDep) -> Principal:
    # A short read session of its own: the request's session (and, on SQLite, a writer's lock) starts
    # only when the route uses it, so no transaction is open while a body streams in.
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    raw = token.strip() if scheme.lower() == "bearer" else None
    with state.sessions_for("GET")() as session:
        principal = authenticate(session, raw)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(scope: Scope) -> Callable[[Principal], Principal]:
    def check(principal: PrincipalDep) -> Principal:
        principal.require(scope.value)
        return principal

    return check


class Auditor:
    """Records one audit event per write, in the request's transaction."""

    def __init__(self, request: Request, session: SessionDep, principal: PrincipalDep) -> None:
        self.session = session
        self.principal = principal
        self.request_id = getattr(request.state, "request_id", None)

    def __call__(
        self, action: str, resource_type: str, resource_id: str | None, details: dict[str, Any] | None = None
    ) -> None:
        record_audit(
            self.session, self.principal, action, resource_type, resource_id, self.request_id, details
        )


AuditDep = Annotated[Auditor, Depends()]


def require_json(request: Request) -> None:
    """415 for a JSON endpoint sent another media type (instead of a confusing validation error)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not '{media or 'no content type'}'")


JsonOnly = Depends(require_json)


def depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return dependant.call is call or any(depends_on(d, call) for d in dependant.dependencies)


def flat_routes(app: FastAPI) -> Iterator[Any]:
    """Every route with its effective path, methods and dependencies (FastAPI >= 0.130 keeps included
    routers as branches; older versions flatten them into app.routes)."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    yield from iter_contexts(app.routes) if iter_contexts is not None else app.routes


def authenticate_first(app: FastAPI) -> None:
    """A route that needs a key checks it before its other dependencies (a media-type check, a body
    parsed by hand): a request without a key gets 401, not 415 or 422. FastAPI solves a route's
    dependencies in order and caches get_principal, so it still runs once."""
    for route in flat_routes(app):
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            dependant.dependencies.sort(key=lambda d: 0 if depends_on(d, get_principal) else 1)
