"""Splits of a dataset (seeded or from the labels' split column), their manifests, and dataset versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response

from api.deps import AuditDep, JsonOnly, SessionDep, require
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.pagination import Page
from platform_core.splits import manifest, service, views
from platform_core.splits.schemas import SplitCreate, SplitOut, VersionOut

router = APIRouter(prefix="/datasets/{dataset_id}", tags=["splits"], dependencies=[JsonOnly])
Reader = Annotated[Principal, Depends(require(Scope.DATASETS_READ))]
Writer = Annotated[Principal, Depends(require(Scope.DATASETS_WRITE))]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("/splits", status_code=201)
def create_split(
    dataset_id: str,
    session: SessionDep,
    principal: Writer,
    audit: AuditDep,
    body: Annotated[SplitCreate | None, Body()] = None,
) -> SplitOut:
    body = body or SplitCreate()
    split = service.create_split(
        session,
        principal.project_id,
        dataset_id,
        seed=body.seed,
        fractions=body.fractions.model_dump() if body.fractions else None,
        column=body.column,
        dataset_version_id=body.dataset_version,
    )
    audit("split.create", "split", split.id)
    return views.split_out(split)


@router.get("/splits")
def list_splits(
    dataset_id: str, session: SessionDep, principal: Reader, limit: Limit = 50, after: str | None = None
) -> Page[SplitOut]:
    return views.list_splits(session, principal.project_id, dataset_id, limit, after)


@router.get("/splits/{split_id}")
def get_split(dataset_id: str, split_id: str, session: SessionDep, principal: Reader) -> SplitOut:
    return views.get_split(session, principal.project_id, dataset_id, split_id)


@router.get("/splits/{split_id}/manifest", response_class=Response)
def get_manifest(dataset_id: str, split_id: str, session: SessionDep, principal: Reader) -> Response:
    data, headers = views.manifest_download(session, principal.project_id, dataset_id, split_id)
    return Response(content=data, media_type=manifest.CONTENT_TYPE, headers=headers)


@router.post("/versions", status_code=201)
def freeze_version(dataset_id: str, session: SessionDep, principal: Writer, audit: AuditDep) -> VersionOut:
    """Freeze the dataset's current accepted, labelled images (or return the version already holding them)."""
    version = service.freeze_version(session, principal.project_id, dataset_id)
    audit("dataset_version.freeze", "dataset_version", version.id)
    return views.version_out(version)


@router.get("/versions")
def list_versions(
    dataset_id: str, session: SessionDep, principal: Reader, limit: Limit = 50, after: str | None = None
) -> Page[VersionOut]:
    return views.list_versions(session, principal.project_id, dataset_id, limit, after)


@router.get("/versions/{version_id}")
def get_version(dataset_id: str, version_id: str, session: SessionDep, principal: Reader) -> VersionOut:
    return views.get_version(session, principal.project_id, dataset_id, version_id)
