"""Queries on PACS nodes, imports, their studies and the listener's associations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from platform_core.datasets import repository as datasets
from platform_core.db.base import utcnow
from platform_core.pacs.models import DicomAssociation, PacsImport, PacsImportStudy, PacsNode
from platform_core.registry import repository as registry


def ae_taken(session: Session, ae_title: str) -> bool:
    """Whether a dataset or a model version already answers to this called AE title."""
    return datasets.ae_title_used(session, ae_title) or registry.ae_title_used(session, ae_title)


def get_node(session: Session, project_id: str, node_id: str) -> PacsNode | None:
    return session.scalar(select(PacsNode).where(PacsNode.id == node_id, PacsNode.project_id == project_id))


def node_named(session: Session, project_id: str, name: str) -> PacsNode | None:
    return session.scalar(select(PacsNode).where(PacsNode.project_id == project_id, PacsNode.name == name))


Row = TypeVar("Row", PacsNode, PacsImport, DicomAssociation)


def _page(session: Session, model: type[Row], where: Any, limit: int, after: str | None) -> Sequence[Row]:
    """Newest first, `limit` rows after the cursor (ids are time-ordered)."""
    q = select(model).where(where)
    if after:
        q = q.where(model.id < after)
    return session.scalars(q.order_by(model.id.desc()).limit(limit)).all()


def list_nodes(session: Session, project_id: str, limit: int, after: str | None) -> Sequence[PacsNode]:
    return _page(session, PacsNode, PacsNode.project_id == project_id, limit, after)


def get_import(session: Session, project_id: str, import_id: str) -> PacsImport | None:
    return session.scalar(
        select(PacsImport).where(PacsImport.id == import_id, PacsImport.project_id == project_id)
    )


def list_imports(session: Session, dataset_id: str, limit: int, after: str | None) -> Sequence[PacsImport]:
    return _page(session, PacsImport, PacsImport.dataset_id == dataset_id, limit, after)


def import_studies(session: Session, import_id: str) -> Sequence[PacsImportStudy]:
    return session.scalars(
        select(PacsImportStudy)
        .where(PacsImportStudy.import_id == import_id)
        .order_by(PacsImportStudy.position)
    ).all()


def claim(session: Session, import_id: str, runner: str, stale_before: datetime) -> PacsImport | None:
    """Take the import for this delivery: a queued one, one this delivery already held (a redelivered
    message), or one whose holder stopped beating. None: someone else runs it, or it has ended."""
    done = session.execute(
        update(PacsImport)
        .where(
            PacsImport.id == import_id,
            PacsImport.status.in_(("queued", "running")),
            or_(
                PacsImport.status == "queued",
                PacsImport.runner == runner,
                PacsImport.heartbeat_at.is_(None),
                PacsImport.heartbeat_at < stale_before,
            ),
        )
        .values(status="running", runner=runner, heartbeat_at=utcnow())
    )
    if not getattr(done, "rowcount", 0):
        return None
    return session.get(PacsImport, import_id, populate_existing=True)


def beat(session: Session, import_id: str, runner: str, **values: Any) -> str | None:
    """Heartbeat (and other values) while this runner holds the import; its status, or None if lost."""
    done = session.execute(
        update(PacsImport)
        .where(PacsImport.id == import_id, PacsImport.runner == runner)
        .values(heartbeat_at=utcnow(), **values)
    )
    if not getattr(done, "rowcount", 0):
        return None
    return session.scalar(select(PacsImport.status).where(PacsImport.id == import_id))


def stale_imports(session: Session, stale_before: datetime) -> Sequence[str]:
    return session.scalars(
        select(PacsImport.id).where(
            PacsImport.status.in_(("queued", "running")),
            or_(PacsImport.heartbeat_at.is_(None), PacsImport.heartbeat_at < stale_before),
            PacsImport.created_at < stale_before,
        )
    ).all()


def moving_import(session: Session, message_id: int) -> PacsImport | None:
    """The running import whose C-MOVE has this MessageID (the sub-operations' MoveOriginatorMessageID)."""
    return session.scalar(
        select(PacsImport).where(PacsImport.move_message_id == message_id, PacsImport.status == "running")
    )


def add_to_study(session: Session, import_id: str, key_hmac: str, **counts: int) -> None:
    """Add outcome counts to one study of an import, in one statement (the listener and the task both add)."""
    cols = PacsImportStudy.__table__.c
    session.execute(
        update(PacsImportStudy)
        .where(PacsImportStudy.import_id == import_id, PacsImportStudy.key_hmac == key_hmac)
        .values({cols[k]: cols[k] + v for k, v in counts.items()})
    )


def set_study(session: Session, import_id: str, key_hmac: str, **values: Any) -> None:
    session.execute(
        update(PacsImportStudy)
        .where(PacsImportStudy.import_id == import_id, PacsImportStudy.key_hmac == key_hmac)
        .values(**values)
    )


def study_keys(session: Session, import_id: str) -> set[str]:
    return set(
        session.scalars(select(PacsImportStudy.key_hmac).where(PacsImportStudy.import_id == import_id))
    )


def add_association_counts(session: Session, association_id: str, **counts: int) -> None:
    cols = DicomAssociation.__table__.c
    session.execute(
        update(DicomAssociation)
        .where(DicomAssociation.id == association_id)
        .values({cols[k]: cols[k] + v for k, v in counts.items()})
    )


def end_association(session: Session, association_id: str, status: str) -> None:
    session.execute(
        update(DicomAssociation)
        .where(DicomAssociation.id == association_id)
        .values(status=status, ended_at=utcnow())
    )


def list_associations(
    session: Session, dataset_id: str, limit: int, after: str | None
) -> Sequence[DicomAssociation]:
    return _page(session, DicomAssociation, DicomAssociation.dataset_id == dataset_id, limit, after)
