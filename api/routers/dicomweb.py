"""DICOMweb STOW-RS into a dataset: POST /v1/datasets/{id}/dicomweb/studies (PS3.18)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import AuditDep, SessionDep, StateDep, require
from api.routers.datasets import body_blocks
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.datasets import service, stow
from platform_core.db.session import committer

router = APIRouter(tags=["dicomweb"])

Writer = Annotated[Principal, Depends(require(Scope.DATASETS_WRITE))]


def related_boundary(request: Request) -> bytes:
    """415 unless `multipart/related; type="application/dicom"`, before the body is read."""
    return stow.check_content_type(request.headers.get("content-type", ""))


Boundary = Annotated[bytes, Depends(related_boundary)]


@router.post("/datasets/{dataset_id}/dicomweb/studies", response_class=JSONResponse)
def stow_rs(
    dataset_id: str,
    request: Request,
    boundary: Boundary,
    session: SessionDep,
    state: StateDep,
    principal: Writer,
    audit: AuditDep,
) -> JSONResponse:
    """Each instance is ingested as soon as its part has arrived (chunked bodies too); committed before
    each read from the client, so no transaction waits on its network."""
    dataset = service.get_dataset(session, principal.project_id, dataset_id)
    audit("dataset.stow", "dataset", dataset.id)
    commit = committer(session, state.dispatch)
    commit()
    result = stow.store_stream(
        session, state.store, state.settings, state.secret, dataset, boundary, body_blocks(request), commit
    )
    return JSONResponse(result.body, status_code=result.status, media_type="application/dicom+json")
