"""DICOMweb STOW-RS into a dataset: POST /v1/datasets/{id}/dicomweb/studies (PS3.18)."""

from __future__ import annotations

import tempfile
from typing import IO, Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import SessionDep, StateDep, require
from api.routers.datasets import ingest_transaction, request_id
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal, record_audit
from platform_core.datasets import service, stow

router = APIRouter(tags=["dicomweb"])

Writer = Annotated[Principal, Depends(require(Scope.DATASETS_WRITE))]


async def spooled_body(request: Request) -> IO[bytes]:
    """Stream the (possibly chunked) body into a spool file; the handler parses it off the event loop."""
    stow.check_content_type(request.headers.get("content-type", ""))
    spool = tempfile.SpooledTemporaryFile(stow.SPOOL_BYTES)
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)
    return spool


Body = Annotated[IO[bytes], Depends(spooled_body)]


@router.post("/datasets/{dataset_id}/dicomweb/studies", response_class=JSONResponse)
def stow_rs(
    dataset_id: str,
    request: Request,
    body: Body,
    session: SessionDep,
    state: StateDep,
    principal: Writer,
) -> JSONResponse:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    boundary = stow.check_content_type(request.headers.get("content-type", ""))
    with body:
        parts = stow.split_parts(body, boundary, state.settings.max_upload_bytes)
    with ingest_transaction(request, state) as work:
        result = stow.store_instances(work, state.store, state.settings, state.secret, dataset, parts)
        record_audit(work, principal, "dataset.stow", "dataset", dataset.id, request_id(request))
    return JSONResponse(result.body, status_code=result.status, media_type="application/dicom+json")
