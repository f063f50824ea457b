"""create_app(): the FastAPI application, its lifespan, middleware, error handler and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api import errors
from api.deps import authenticate_first
from api.forward import InferenceTier
from api.limits import Limits
from api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from api.openapi import document_errors
from api.routers import health
from api.state import AppState
from api.streams import SharedReads
from platform_core.config import Settings, get_settings
from platform_core.db.outbox import Dispatch
from platform_core.db.session import make_engine, make_sessionmaker, read_only
from platform_core.storage import open_store

CONSOLE_DIR = Path(__file__).parent / "console"


def build_state(settings: Settings, dispatch: Dispatch | None = None) -> AppState:
    settings.check_startup()
    engine = make_engine(settings.db_url)
    if dispatch is None:
        from worker.app import dispatcher, make_celery

        dispatch = dispatcher(make_celery(settings))
    return AppState(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        read_sessions=make_sessionmaker(read_only(engine)),
        store=open_store(settings.object_store_url or "", settings),
        dispatch=dispatch,
        secret=settings.resolved_secret(),
    )


def create_app(settings: Settings | None = None, state: AppState | None = None) -> FastAPI:
    settings = settings or (state.settings if state else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.medtune = state or build_state(settings)
        # The deployed mode: predictions go to the inference tier over one async client (api.forward).
        app.state.inference_tier = InferenceTier.from_settings(settings)
        try:
            yield
        finally:
            if app.state.inference_tier is not None:
                await app.state.inference_tier.aclose()
            if state is None:
                app.state.medtune.engine.dispose()

    app = FastAPI(
        title="medtune",
        version="0.1.0",
        summary="Fine-tune medical-imaging foundation models with LoRA and serve them over REST.",
        lifespan=lifespan,
    )
    app.state.limits = Limits.from_settings(settings)
    app.state.shared_reads = SharedReads()
    errors.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    for router in _v1_routers():
        app.include_router(router, prefix="/v1")
    document_errors(app)  # after every route is in: it documents each one's error responses
    app.mount("/", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
    authenticate_first(app)  # last: it reorders the dependencies of the routes as served
    return app


def _v1_routers() -> list[APIRouter]:
    from api.routers import registry

    return registry.ROUTERS
