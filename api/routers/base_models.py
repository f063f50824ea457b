"""Base models: the catalog (grouped, with licenses and weight availability), and registering weights
for a catalog architecture in the format they are published in: a timm .safetensors or .pth, a zip of a
transformers `save_pretrained` folder or of an open_clip hub release, or a TorchXRayVision .pt."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from api.deps import AuditDep, SessionDep, StateDep, StoreDep, require
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.jobs import base_models
from platform_core.jobs.schemas import BaseModelOut
from platform_core.pagination import Page
from platform_core.training.formats import FORMATS

router = APIRouter(prefix="/base-models", tags=["base-models"])
Reader = Annotated[Principal, Depends(require(Scope.MODELS_READ))]
UPLOAD_HELP = (
    "timm: .safetensors or .pth; transformers, open_clip: a zip of the published folder; "
    "torchxrayvision: the release .pt"
)
Writer = Annotated[Principal, Depends(require(Scope.MODELS_WRITE))]


@router.get("")
def list_base_models(
    session: SessionDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    after: str | None = None,
) -> Page[BaseModelOut]:
    """The catalog's entries, then the project's registered weights."""
    return base_models.list_base_models(session, principal.project_id, limit, after)


@router.post("", status_code=201)
def register_base_model(
    state: StateDep,
    session: SessionDep,
    store: StoreDep,
    principal: Writer,
    audit: AuditDep,
    architecture: Annotated[str, Form(description="a catalog name, e.g. rad_dino")],
    name: Annotated[str, Form(max_length=200)],
    file: Annotated[UploadFile, File(description=UPLOAD_HELP)],
    weights_format: Annotated[str, Form(alias="format", description=f"one of {', '.join(FORMATS)}")] = "timm",
) -> BaseModelOut:
    record = base_models.register_base_model(
        session, store, principal.project_id, name, architecture, file.filename or "weights", file.file,
        state.settings.max_upload_bytes, weights_format,
    )  # fmt: skip
    audit("base_model.register", "base_model", record.id)
    return base_models.registered_out(record)
