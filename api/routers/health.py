"""Liveness and readiness: /readyz checks the database, the object store and the broker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, dict[str, Any]] = {}

    def run(name: str, fn: Any) -> None:
        try:
            fn()
            checks[name] = {"ok": True}
        except Exception as exc:  # a readiness probe reports, it does not raise
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    def database() -> None:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def broker() -> None:
        from worker.app import make_celery

        with make_celery(state.settings).connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    run("database", database)
    run("object_store", state.store.check)
    run("broker", broker)
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
