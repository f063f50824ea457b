"""Datasets: create and read (with counts), upload files, import labels, list images, get the DICOM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from python_multipart.multipart import parse_options_header

from api.deps import AuditDep, SessionDep, StateDep, require
from api.routers import erasures
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.datasets import deid_report, labels, service, views
from platform_core.datasets.deid_report import DeidReport
from platform_core.datasets.schemas import DatasetCreate, DatasetOut, ImageOut, LabelImport, UploadResult
from platform_core.db.session import committer
from platform_core.erasure.schemas import ErasureOut
from platform_core.errors import BadRequest, UnsupportedMediaType
from platform_core.pagination import Page

router = APIRouter(tags=["datasets"])

Reader = Annotated[Principal, Depends(require(Scope.DATASETS_READ))]
Writer = Annotated[Principal, Depends(require(Scope.DATASETS_WRITE))]


# The body of POST /files as documentation; the handler reads it itself, part by part.
UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "DICOM files, zips of them, or PNG/JPEG images",
                    },
                    "manifest": {
                        "type": "string",
                        "format": "binary",
                        "description": "CSV: path, patient_id, study_id, labels (before or after the images)",
                    },
                },
            }
        }
    },
}
# What the parser is handed at a time: a slow client's finished part is ingested (and committed)
# within this many bytes of it, and each block costs one hand-over between the loop and this thread.
BLOCK_BYTES = 64 * 1024


def multipart_form(request: Request) -> None:
    # Checked before the body is read, so a wrong type answers 415, not a missing-field 422.
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("send multipart/form-data", param="files")


def form_boundary(request: Request) -> bytes:
    _kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("the multipart/form-data body has no boundary", param="files")
    return boundary


def body_blocks(request: Request, size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The request body as it arrives, for a sync handler (it runs in a worker thread).

    Each block is awaited on the event loop and handed to this thread, which parses and ingests it
    before asking for the next: nothing blocking runs on the loop, and the client is read no
    faster than the pipeline goes (TCP backpressure), so at most one block waits in memory. The
    body-size limit (413) and a dropped client raise here, from the middleware and Starlette.
    """
    chunks = request.stream()

    async def next_block() -> bytes:
        block = bytearray()
        async for chunk in chunks:
            block += chunk
            if len(block) >= size:
                break
        return bytes(block)

    while block := anyio.from_thread.run(next_block):
        yield block


@router.post("/datasets", status_code=201)
def create_dataset(
    body: DatasetCreate, session: SessionDep, state: StateDep, principal: Writer, audit: AuditDep
) -> DatasetOut:
    dataset = service.create_dataset(session, principal.project_id, body, state.settings.dicom_ae_title)
    audit("dataset.create", "dataset", dataset.id)
    return views.dataset_out(session, dataset)


@router.get("/datasets")
def list_datasets(
    session: SessionDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> Page[DatasetOut]:
    return views.list_datasets(session, principal.project_id, limit, after)


@router.get("/datasets/{dataset_id}")
def get_dataset(dataset_id: str, session: SessionDep, principal: Reader) -> DatasetOut:
    return views.dataset_out(session, service.get_dataset(session, principal.project_id, dataset_id))


@router.get("/datasets/{dataset_id}/deid-report")
def get_deid_report(dataset_id: str, session: SessionDep, principal: Reader) -> DeidReport:
    """What de-identification did in this dataset: counts per action, attributes options kept, rejections."""
    return deid_report.build(session, service.get_dataset(session, principal.project_id, dataset_id))


@router.post(
    "/datasets/{dataset_id}/files",
    status_code=202,
    dependencies=[Depends(multipart_form)],
    openapi_extra={"requestBody": UPLOAD_BODY},
)
def upload_files(
    dataset_id: str,
    request: Request,
    session: SessionDep,
    state: StateDep,
    principal: Writer,
    audit: AuditDep,
) -> UploadResult:
    """Parts are ingested as they arrive (not parsed up front): memory holds one part at a time.

    The request commits before each read from the client (first here, after authentication and the
    audit record), so no transaction, and on SQLite no write lock, waits on the client's network."""
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    boundary = form_boundary(request)
    audit("dataset.upload", "dataset", dataset.id)
    commit = committer(session, state.dispatch)
    commit()
    result = service.ingest_stream(
        session, state.store, state.settings, state.secret, dataset, boundary, body_blocks(request), commit
    )
    return UploadResult(data=result)


@router.post("/datasets/{dataset_id}/labels", dependencies=[Depends(multipart_form)])
def import_labels(
    dataset_id: str,
    file: Annotated[
        UploadFile,
        File(
            description="CSV: AccessionNumber or StudyInstanceUID + label columns; optional `split` column; "
            "optional subgroup columns headed `group:<name>` (e.g. `group:site`): the test metrics of jobs "
            "are reported per value (at most 50 values per group)"
        ),
    ],
    session: SessionDep,
    state: StateDep,
    principal: Writer,
    audit: AuditDep,
) -> LabelImport:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    data = file.file.read(64 * 1024 * 1024)
    result = labels.import_labels(session, state.secret, dataset, data, state.store)
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
) -> Page[ImageOut]:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    return views.list_images(session, dataset, status, limit, after)


@router.delete("/datasets/{dataset_id}/images/{image_id}")
def erase_image(
    dataset_id: str, image_id: str, session: SessionDep, state: StateDep, principal: Writer, audit: AuditDep
) -> ErasureOut:
    """Erase one image everywhere (see platform_core.erasure); again: 200 with zero removed."""
    out = erasures.eraser(session, state, principal).erase_image(dataset_id, image_id)
    audit("erasure.image", "image", image_id, out.audit_details())
    return out


@router.delete("/datasets/{dataset_id}")
def erase_dataset(
    dataset_id: str, session: SessionDep, state: StateDep, principal: Writer, audit: AuditDep
) -> ErasureOut:
    """Erase every image of the dataset and delete it; jobs and model versions trained on it are flagged."""
    out = erasures.eraser(session, state, principal).erase_dataset(dataset_id)
    audit("erasure.dataset", "dataset", dataset_id, out.audit_details())
    return out


@router.get("/datasets/{dataset_id}/images/{image_id}/dicom")
def get_dicom(
    dataset_id: str, image_id: str, session: SessionDep, state: StateDep, principal: Reader
) -> StreamingResponse:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    chunks = service.open_dicom(session, state.store, dataset, image_id)
    return StreamingResponse(chunks, media_type="application/dicom")
