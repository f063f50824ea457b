"""Registered models: promote a job, versions, aliases, archive; predictions (DICOM, PNG, JPEG,
multipart, base64 JSON) and batch prediction jobs. Model work runs in the threadpool, never on the
event loop; torch loads only inside platform_core.inference.serving's functions."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api import forward
from api.deps import AuditDep, JsonOnly, SessionDep, StateDep, require
from api.limits import LimitsDep
from api.predict_bodies import PREDICT_REQUEST_BODY, decode_bodies, media_type
from api.state import AppState
from platform_core.artifacts import ModelManifest
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.inference import serving
from platform_core.pacs import sr as pacs_sr
from platform_core.pagination import Page
from platform_core.registry import service, views
from platform_core.registry.schemas import (
    AliasSet,
    BatchCreate,
    BatchOut,
    ModelCreate,
    ModelDetail,
    ModelOut,
    PredictOut,
    VersionOut,
)

log = logging.getLogger("medtune.api")
SR_FORMAT = "sr: answer one DICOM image with a DICOM SR (application/dicom) referencing it"

router = APIRouter(prefix="/models", tags=["models"])
Reader = Annotated[Principal, Depends(require(Scope.MODELS_READ))]
Writer = Annotated[Principal, Depends(require(Scope.MODELS_WRITE))]
Caller = Annotated[Principal, Depends(require(Scope.INFERENCE))]


def _warm(state: AppState, manifest: ModelManifest) -> None:
    try:
        serving.warm(state.settings, state.store, manifest)
    except Exception as exc:  # the first prediction will load it (and say why if it cannot)
        log.warning("warm-up of %s failed: %s", manifest.ref, exc)


@router.post("", status_code=201, dependencies=[JsonOnly])
def promote(
    body: ModelCreate, session: SessionDep, state: StateDep, principal: Writer, audit: AuditDep,
    background: BackgroundTasks,
) -> VersionOut:  # fmt: skip
    version = service.promote(
        session, state.store, principal.project_id, body, state.settings.mlflow_tracking_uri
    )
    audit("model.version.create", "model_version", version.id)
    background.add_task(_warm, state, version.model_manifest)
    return views.version_out(session, version)


@router.get("")
def list_models(
    session: SessionDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    after: str | None = None,
) -> Page[ModelOut]:
    return views.list_models(session, principal.project_id, limit, after)


@router.get("/{ref}")
def get_model(ref: str, session: SessionDep, principal: Reader) -> ModelDetail:
    """A model by name (with the version `name` serves), or one version by `name:N` / `name@alias`."""
    return views.model_detail(session, principal.project_id, ref)


@router.get("/{name}/versions")
def list_versions(
    name: str,
    session: SessionDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    after: str | None = None,
) -> Page[VersionOut]:
    """Newest first; `after` pages towards older versions."""
    return views.list_versions(session, principal.project_id, name, limit, after)


@router.get("/{name}/versions/{number}")
def get_version(name: str, number: int, session: SessionDep, principal: Reader) -> VersionOut:
    return views.named_version(session, principal.project_id, name, number)


@router.delete("/{name}/versions/{number}")
def archive_version(
    name: str, number: int, session: SessionDep, principal: Writer, audit: AuditDep
) -> VersionOut:
    version = service.archive(session, principal.project_id, name, number)
    audit("model.version.archive", "model_version", version.id)
    serving.evict(version.id)
    return views.version_out(session, version)


@router.put("/{name}/aliases/{alias}", dependencies=[JsonOnly])
def set_alias(
    name: str,
    alias: str,
    body: AliasSet,
    session: SessionDep,
    state: StateDep,
    principal: Writer,
    audit: AuditDep,
) -> ModelOut:
    record = service.assign_alias(
        session, state.store, principal.project_id, name, alias, body,
        state.settings.alias_noninferiority_margin, state.settings.mlflow_tracking_uri,
    )  # fmt: skip
    audit("model.alias.set", "model_alias", record.id)
    return views.named_model(session, principal.project_id, name)


# --- predictions ------------------------------------------------------------------------------


@router.post("/{ref}/predict", response_model=PredictOut, openapi_extra={"requestBody": PREDICT_REQUEST_BODY})
async def predict(
    ref: str, request: Request, state: StateDep, principal: Caller, limits: LimitsDep, tier: forward.TierDep,
    explain: bool = False,
    fmt: Annotated[Literal["json", "sr"], Query(alias="format", description=SR_FORMAT)] = "json",
) -> Any:  # fmt: skip
    """Probabilities for each image. Only the body's bytes are awaited here: the model lookup,
    decoding and the model run in the threadpool. A key has at most N requests here at once, from
    the first byte of the body read to the answer (429 past that), which also bounds its memory.
    In the deployed mode (MEDTUNE_INFERENCE_URLS) the inference tier runs the model (api.forward)."""
    media_type(request.headers.get("content-type", ""))  # 415 before the body is read
    if fmt == "sr":
        pacs_sr.check_request(request.headers.get("content-type", ""))
    with limits.predictions.hold(principal.key_id):
        raw = await request.body()
        model, number, manifest = await run_in_threadpool(_serving_version, state, principal.project_id, ref)
        content_type = request.headers["content-type"]
        if tier is None:
            predictions = await run_in_threadpool(_predict, state, content_type, raw, manifest, explain)
        else:
            body = await run_in_threadpool(forward.payload, state, content_type, raw, manifest, explain)
            predictions = await tier.predict(manifest, body)
    if fmt == "sr":
        report = await run_in_threadpool(pacs_sr.for_request, raw, f"{model}:{number}", predictions)
        return Response(report, media_type="application/dicom")
    return PredictOut.model_validate({"model": model, "version": number, "predictions": predictions})


def _serving_version(state: AppState, project_id: str, ref: str) -> tuple[str, int, ModelManifest]:
    with state.sessions_for("GET")() as session:
        model, version = service.resolve(session, project_id, ref)
        return model.name, version.number, version.model_manifest


def _predict(
    state: AppState, content_type: str, raw: bytes, manifest: ModelManifest, explain: bool
) -> list[dict[str, Any]]:
    bodies = decode_bodies(content_type, raw, state.settings.max_predict_instances)
    return serving.predict(state.settings, state.store, manifest, bodies, explain)


@router.post("/{ref}/batch-predictions", status_code=202, dependencies=[JsonOnly])
def create_batch(
    ref: str, body: BatchCreate, session: SessionDep, principal: Writer, audit: AuditDep
) -> BatchOut:
    batch = service.create_batch(session, principal.project_id, ref, body)
    audit("batch_prediction.create", "batch_prediction", batch.id)
    return views.batch_out(session, principal.project_id, batch.id)


@router.get("/batch-predictions/{batch_id}")
def get_batch(batch_id: str, session: SessionDep, principal: Reader) -> BatchOut:
    return views.batch_out(session, principal.project_id, batch_id)
