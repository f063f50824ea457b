"""Datasets: create and read (with counts), upload files, import labels, list images, get the DICOM."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from api.deps import AuditDep, SessionDep, StateDep, require
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.datasets import labels, service
from platform_core.datasets.schemas import (
    DatasetCreate,
    DatasetOut,
    DatasetPage,
    ImagePage,
    LabelImport,
    UploadResult,
)
from platform_core.errors import UnsupportedMediaType

router = APIRouter(tags=["datasets"])

Reader = Annotated[Principal, Depends(require(Scope.DATASETS_READ))]
Writer = Annotated[Principal, Depends(require(Scope.DATASETS_WRITE))]


def multipart_form(request: Request) -> None:
    # Checked before the body is parsed, so a wrong type answers 415, not a missing-field 422.
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("send multipart/form-data", param="files")


@router.post("/datasets", status_code=201)
def create_dataset(
    body: DatasetCreate, session: SessionDep, principal: Writer, audit: AuditDep
) -> DatasetOut:
    dataset = service.create_dataset(session, principal.project_id, body)
    audit("dataset.create", "dataset", dataset.id)
    return service.dataset_out(session, dataset)


@router.get("/datasets")
def list_datasets(
    session: SessionDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> DatasetPage:
    from platform_core.datasets import repository

    rows = list(repository.list_datasets(session, principal.project_id, limit + 1, after))
    data = [service.dataset_out(session, d) for d in rows[:limit]]
    return DatasetPage(
        data=data,
        has_more=len(rows) > limit,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/datasets/{dataset_id}")
def get_dataset(dataset_id: str, session: SessionDep, principal: Reader) -> DatasetOut:
    return service.dataset_out(session, service.get_dataset(session, principal.project_id, dataset_id))


@router.post("/datasets/{dataset_id}/files", status_code=202, dependencies=[Depends(multipart_form)])
def upload_files(
    dataset_id: str,
    files: Annotated[list[UploadFile], File(description="DICOM files, zips of them, or PNG/JPEG images")],
    session: SessionDep,
    state: StateDep,
    principal: Writer,
    audit: AuditDep,
    manifest: Annotated[
        UploadFile | None, File(description="CSV: path, patient_id, study_id, labels")
    ] = None,
) -> UploadResult:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    table = manifest.file.read(16 * 1024 * 1024) if manifest is not None else None
    uploads = [service.Upload(f.filename or f"file{i}", f.file) for i, f in enumerate(files)]
    result = service.ingest_uploads(
        session, state.store, state.settings, state.secret, dataset, uploads, table
    )
    audit("dataset.upload", "dataset", dataset.id)
    return UploadResult(data=result)


@router.post("/datasets/{dataset_id}/labels", dependencies=[Depends(multipart_form)])
def import_labels(
    dataset_id: str,
    file: Annotated[UploadFile, File(description="CSV: AccessionNumber or StudyInstanceUID + label columns")],
    session: SessionDep,
    state: StateDep,
    principal: Writer,
    audit: AuditDep,
) -> LabelImport:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    result = labels.import_labels(session, state.secret, dataset, file.file.read(64 * 1024 * 1024))
    audit("dataset.labels", "dataset", dataset.id)
    return result


@router.get("/datasets/{dataset_id}/images")
def list_images(
    dataset_id: str,
    session: SessionDep,
    principal: Reader,
    status: Annotated[str | None, Query(pattern="^(queued|accepted|rejected)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: str | None = None,
) -> ImagePage:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    data, has_more = service.list_images(session, dataset, status, limit, after)
    return ImagePage(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/datasets/{dataset_id}/images/{image_id}/dicom")
def get_dicom(
    dataset_id: str, image_id: str, session: SessionDep, state: StateDep, principal: Reader
) -> StreamingResponse:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    chunks = service.open_dicom(session, state.store, dataset, image_id)
    return StreamingResponse(chunks, media_type="application/dicom")
