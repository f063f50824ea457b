"""PACS: source nodes (/pacs-nodes), imports into a dataset (202; JSON keys or a labels CSV), cancel,
and the listener's associations into a dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError

from api.deps import AuditDep, SessionDep, StateDep, require
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.datasets import service as datasets
from platform_core.errors import Invalid, UnsupportedMediaType
from platform_core.pacs import service, views
from platform_core.pacs.schemas import (
    AssociationOut,
    ImportCreate,
    ImportOut,
    InferenceAeOut,
    InferenceAeSet,
    PacsNodeCreate,
    PacsNodeOut,
)
from platform_core.pagination import Page

router = APIRouter(tags=["pacs"])

Reader = Annotated[Principal, Depends(require(Scope.DATASETS_READ))]
Writer = Annotated[Principal, Depends(require(Scope.DATASETS_WRITE))]
ModelWriter = Annotated[Principal, Depends(require(Scope.MODELS_WRITE))]
Limit = Annotated[int, Query(ge=1, le=100)]

IMPORT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": ImportCreate.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["node_id", "labels"],
                "properties": {
                    "node_id": {"type": "string"},
                    "labels": {
                        "type": "string",
                        "format": "binary",
                        "description": "labels CSV: AccessionNumber or StudyInstanceUID + label columns",
                    },
                },
            }
        },
    },
}  # fmt: skip


@dataclass
class ImportRequest:
    body: ImportCreate
    labels_csv: bytes | None


async def import_request(request: Request) -> ImportRequest:
    """The body as JSON keys, or a multipart form with `node_id` and a `labels` CSV (read here, before
    the handler's thread: its size is bounded by the request limit and LABELS_BYTES)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if media == "application/json":
            return ImportRequest(ImportCreate.model_validate_json(await request.body()), None)
        if media == "multipart/form-data":
            form = await request.form()
            upload = form.get("labels")
            if upload is None or isinstance(upload, str):
                raise Invalid("send the labels CSV as a file part named 'labels'", param="labels")
            data = await upload.read(service.LABELS_BYTES + 1)
            if len(data) > service.LABELS_BYTES:
                raise Invalid("the labels CSV is over 64 MiB", param="labels")
            body = ImportCreate.model_construct(node_id=str(form.get("node_id") or ""))
            if not body.node_id:
                raise Invalid("send node_id", param="node_id")
            return ImportRequest(body, data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(str(first.get("msg")), param=".".join(map(str, first.get("loc", ()))) or None) from None
    raise UnsupportedMediaType("send application/json or multipart/form-data")


@router.post("/pacs-nodes", status_code=201)
def create_node(
    body: PacsNodeCreate, session: SessionDep, state: StateDep, principal: Writer, audit: AuditDep
) -> PacsNodeOut:
    node = service.create_node(session, state.secret, principal.project_id, body)
    audit("pacs_node.create", "pacs_node", node.id)
    return views.node_out(node)


@router.get("/pacs-nodes")
def list_nodes(
    session: SessionDep, principal: Reader, limit: Limit = 20, after: str | None = None
) -> Page[PacsNodeOut]:
    return views.list_nodes(session, principal.project_id, limit, after)


@router.get("/pacs-nodes/{node_id}")
def get_node(node_id: str, session: SessionDep, principal: Reader) -> PacsNodeOut:
    return views.node_out(service.get_node(session, principal.project_id, node_id))


@router.delete("/pacs-nodes/{node_id}", status_code=204)
def delete_node(node_id: str, session: SessionDep, principal: Writer, audit: AuditDep) -> None:
    service.delete_node(session, principal.project_id, node_id)
    audit("pacs_node.delete", "pacs_node", node_id)


@router.post("/datasets/{dataset_id}/imports", status_code=202, openapi_extra={"requestBody": IMPORT_BODY})
def create_import(
    dataset_id: str,
    req: Annotated[ImportRequest, Depends(import_request)],
    session: SessionDep,
    state: StateDep,
    principal: Writer,
    audit: AuditDep,
) -> ImportOut:
    """Starts pulling the studies from the node (the task runs after this commits); poll the import."""
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    imp, label_result = service.create_import(session, state.secret, dataset, req.body, req.labels_csv)
    audit("pacs_import.create", "pacs_import", imp.id, {"studies": imp.studies_total})
    return views.import_out(session, imp, label_result)


@router.get("/datasets/{dataset_id}/imports")
def list_imports(
    dataset_id: str, session: SessionDep, principal: Reader, limit: Limit = 20, after: str | None = None
) -> Page[ImportOut]:
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    return views.list_imports(session, dataset.id, limit, after)


@router.get("/datasets/{dataset_id}/imports/{import_id}")
def get_import(dataset_id: str, import_id: str, session: SessionDep, principal: Reader) -> ImportOut:
    return views.import_out(session, _import(session, principal, dataset_id, import_id))


@router.post("/datasets/{dataset_id}/imports/{import_id}/cancel")
def cancel_import(
    dataset_id: str, import_id: str, session: SessionDep, principal: Writer, audit: AuditDep
) -> ImportOut:
    imp = service.cancel_import(session, _import(session, principal, dataset_id, import_id))
    audit("pacs_import.cancel", "pacs_import", imp.id)
    return views.import_out(session, imp)


@router.get("/datasets/{dataset_id}/associations")
def list_associations(
    dataset_id: str, session: SessionDep, principal: Reader, limit: Limit = 20, after: str | None = None
) -> Page[AssociationOut]:
    """What each association into the dataset's AE title brought: received, queued, duplicates, rejected."""
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    return views.list_associations(session, dataset.id, limit, after)


@router.put("/models/{name}/versions/{number}/dicom-ae-title")
def bind_inference_ae(
    name: str,
    number: int,
    body: InferenceAeSet,
    session: SessionDep,
    state: StateDep,
    principal: ModelWriter,
    audit: AuditDep,
) -> InferenceAeOut:
    """Studies C-STOREd to this AE title are predicted by this version; the SR goes back to the sender."""
    version = service.bind_inference_ae(
        session, principal.project_id, name, number, body.ae_title, state.settings.dicom_ae_title
    )
    audit("model_version.dicom_ae_title", "model_version", version.id)
    return views.inference_ae_out(name, number, version.dicom_ae_title)


def _import(session: Any, principal: Principal, dataset_id: str, import_id: str) -> Any:
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    imp = service.get_import(session, principal.project_id, import_id)
    if imp.dataset_id != dataset.id:
        raise Invalid(f"import '{import_id}' is not of this dataset", param="import_id")
    return imp
