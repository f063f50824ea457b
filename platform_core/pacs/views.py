"""PACS nodes, imports and DICOM associations as the API shows them, and their pages. A node's sealed
credentials never leave the service; an import's studies appear by their HMAC only."""

from __future__ import annotations

from sqlalchemy.orm import Session

from platform_core.datasets.schemas import LabelImport
from platform_core.pacs import repository
from platform_core.pacs.models import DicomAssociation, PacsImport, PacsImportStudy, PacsNode
from platform_core.pacs.schemas import (
    AssociationOut,
    ImportOut,
    ImportProgress,
    InferenceAeOut,
    PacsNodeOut,
    StudyOutcome,
)
from platform_core.pagination import Page

LABEL_COUNTS = {"rows", "imported", "matched", "unmatched"}


def list_nodes(session: Session, project_id: str, limit: int, after: str | None) -> Page[PacsNodeOut]:
    return Page.build(repository.list_nodes(session, project_id, limit + 1, after), limit, node_out)


def list_imports(session: Session, dataset_id: str, limit: int, after: str | None) -> Page[ImportOut]:
    rows = repository.list_imports(session, dataset_id, limit + 1, after)
    return Page.build(rows, limit, lambda i: import_out(session, i))


def list_associations(
    session: Session, dataset_id: str, limit: int, after: str | None
) -> Page[AssociationOut]:
    rows = repository.list_associations(session, dataset_id, limit + 1, after)
    return Page.build(rows, limit, association_out)


def node_out(node: PacsNode) -> PacsNodeOut:
    return PacsNodeOut(
        id=node.id, name=node.name, kind=node.kind, url=node.url, host=node.host, port=node.port,
        ae_title=node.ae_title, auth_type=node.auth_type, created_at=node.created_at,
    )  # fmt: skip


def import_out(session: Session, imp: PacsImport, label_result: LabelImport | None = None) -> ImportOut:
    studies = [_study_out(s) for s in repository.import_studies(session, imp.id)]
    progress = ImportProgress(
        studies_total=imp.studies_total,
        studies_done=sum(s.status == "done" for s in studies),
        studies_not_found=sum(s.status == "not_found" for s in studies),
        studies_failed=sum(s.status == "failed" for s in studies),
        instances=sum(s.instances for s in studies),
        queued=sum(s.queued for s in studies),
        duplicates=sum(s.duplicates for s in studies),
        rejected=sum(s.rejected for s in studies),
    )
    return ImportOut(
        id=imp.id, dataset_id=imp.dataset_id, node_id=imp.node_id, key_type=imp.key_type,
        status=imp.status,
        progress=progress, studies=studies,
        labels=label_result.model_dump(include=LABEL_COUNTS) if label_result else None,
        error=imp.error, created_at=imp.created_at, finished_at=imp.finished_at,
    )  # fmt: skip


def _study_out(s: PacsImportStudy) -> StudyOutcome:
    return StudyOutcome(
        key_hmac=s.key_hmac, status=s.status,
        instances=s.instances, queued=s.queued, duplicates=s.duplicates, rejected=s.rejected, error=s.error,
    )  # fmt: skip


def association_out(a: DicomAssociation) -> AssociationOut:
    return AssociationOut(
        id=a.id, calling_ae_title=a.calling_ae_title, status=a.status, received=a.received, queued=a.queued,
        duplicates=a.duplicates, rejected=a.rejected, created_at=a.created_at, ended_at=a.ended_at,
    )  # fmt: skip


def inference_ae_out(model: str, version: int, ae_title: str | None) -> InferenceAeOut:
    """The AE title a model version answers to: studies C-STOREd to it are predicted by that version."""
    return InferenceAeOut(model=model, version=version, dicom_ae_title=ae_title)
