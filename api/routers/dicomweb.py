"""DICOMweb STOW-RS into a dataset: POST /v1/datasets/{id}/dicomweb/studies (PS3.18)."""

from __future__ import annotations

import tempfile
from typing import IO, Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import AuditDep, SessionDep, StateDep, require
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
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
    audit: AuditDep,
) -> JSONResponse:
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    boundary = stow.check_content_type(request.headers.get("content-type", ""))
    with body:
        parts = stow.split_parts(body, boundary, state.settings.max_upload_bytes)
    result = stow.store_instances(session, state.store, state.settings, state.secret, dataset, parts)
    audit("dataset.stow", "dataset", dataset.id)
    return JSONResponse(result.body, status_code=result.status, media_type="application/dicom+json")
