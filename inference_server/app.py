"""The inference tier's HTTP app: the serving engine (platform_core.inference.serving: shared bases, the
adapter LRU, the micro-batcher, Grad-CAM) behind HTTP, on the GPU where there is one.

Run by `medtune serve --host 0.0.0.0 --port 8000` (one process per GPU: the engine and its adapters
live in the process). Settings come from MEDTUNE_* as for every process: the object store
(MEDTUNE_OBJECT_STORE_URL and the MEDTUNE_S3_* ones), MEDTUNE_ADAPTER_CACHE_SIZE,
MEDTUNE_BATCH_WINDOW_MS, MEDTUNE_MAX_BATCH_SIZE, MEDTUNE_INFERENCE_BF16, MEDTUNE_MAX_PREDICT_INSTANCES,
MEDTUNE_MAX_PIXELS, MEDTUNE_MAX_REQUEST_BYTES and MEDTUNE_INFERENCE_TOKEN (set: callers must send it
as a Bearer token). No database: the API sends each version's manifest with the images.

    GET  /healthz     200 once the engine is built: {"status": "ok", "device", "bases", "adapters"
                      (version ids held now), "adapter_loads", "base_loads", "evictions", "requests",
                      "images", "errors"}; adapter_loads not growing with requests = adapters stay hot.
    POST /v1/predict  body: platform_core.inference.wire (manifest, image bodies, explain); answers
                      {"predictions": [...]}, exactly what serving.predict returns in process, or an
                      error in the platform's shape {"error": {"type", "message", "param"}}.
    GET  /v1/backbones/{name}  the catalog entry of a timm name (inferred with timm here, so the API
                      that forwards never imports torch), or the catalog's 422.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from platform_core.config import Settings, get_settings
from platform_core.errors import PayloadTooLarge, PlatformError, Unauthenticated
from platform_core.inference import serving, wire
from platform_core.storage import ObjectStore, open_store
from platform_core.training import catalog

log = logging.getLogger("medtune.inference_server")


@dataclass
class Tier:
    settings: Settings
    store: ObjectStore
    requests: int = 0
    images: int = 0
    errors: int = 0
    served: set[str] = field(default_factory=set)  # version ids seen; /healthz lists those still held
    lock: threading.Lock = field(default_factory=threading.Lock)

    def predict(self, raw: bytes) -> list[dict[str, Any]]:
        request = wire.decode(raw, self.settings.max_predict_instances)
        out = serving.predict(self.settings, self.store, request.manifest, request.bodies, request.explain)
        with self.lock:
            self.requests += 1
            self.images += len(out)
            self.served.add(request.manifest.id)
        return out

    def health(self) -> dict[str, Any]:
        engine = serving.engine(self.settings)
        with self.lock:
            self.served = {v for v in self.served if engine.loaded(v)}
            held, counts = sorted(self.served), (self.requests, self.images, self.errors)
        s = engine.stats
        return {
            "status": "ok", "device": str(engine.device), "bases": engine.base_count(), "adapters": held,
            "adapter_loads": s.adapter_loads, "base_loads": s.base_loads, "evictions": s.evictions,
            "requests": counts[0], "images": counts[1], "errors": counts[2],
        }  # fmt: skip


def error_body(status: int, type_: str, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message, "param": param}}, status_code=status)


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refused (413) past `limit` bytes before more of it is held in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes (MEDTUNE_MAX_REQUEST_BYTES)")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes (MEDTUNE_MAX_REQUEST_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_token(settings: Settings, request: Request) -> None:
    token = settings.inference_token
    if not token:
        return
    sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise Unauthenticated("the inference tier needs MEDTUNE_INFERENCE_TOKEN as a Bearer token")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.object_store_url or "", settings)
        # torch loads and the device is chosen here, before the port opens: /healthz means ready.
        engine = await run_in_threadpool(serving.engine, settings)
        log.info("inference tier on %s", engine.device)
        app.state.tier = Tier(settings, store)
        yield

    app = FastAPI(title="medtune inference tier", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(PlatformError)
    async def platform_error(_request: Request, exc: PlatformError) -> JSONResponse:
        _count_error(app)
        return error_body(exc.status_code, exc.type, exc.message, exc.param)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _count_error(app)
        # The message never echoes request content: it may carry identifiers.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return error_body(500, "api_error", "internal error in the inference tier")

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        tier: Tier = request.app.state.tier
        return await run_in_threadpool(tier.health)

    @app.get("/v1/backbones/{name:path}")
    async def backbone(name: str, request: Request) -> dict[str, Any]:
        _check_token(request.app.state.tier.settings, request)
        return wire.entry_to_json(await run_in_threadpool(catalog.get, name))

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        tier: Tier = request.app.state.tier
        _check_token(tier.settings, request)
        raw = await read_capped(request, tier.settings.max_request_bytes)
        predictions = await run_in_threadpool(tier.predict, raw)
        return JSONResponse({"predictions": predictions})

    return app


def _count_error(app: FastAPI) -> None:
    tier: Tier | None = getattr(app.state, "tier", None)
    if tier is not None:
        with tier.lock:
            tier.errors += 1
