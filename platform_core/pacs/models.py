"""Tables for PACS nodes (secrets encrypted), imports with per-study outcomes keyed by HMAC, and the
outcome counts of each association the listener accepted. Nothing here holds an identifier."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from platform_core.db.base import Base, TimestampMixin


class PacsNode(TimestampMixin, Base):
    __tablename__ = "pacs_nodes"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # pn_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # dicomweb | dimse
    url: Mapped[str | None] = mapped_column(String(500))  # dicomweb: the base URL
    host: Mapped[str | None] = mapped_column(String(255))  # dimse
    port: Mapped[int | None] = mapped_column(Integer)
    ae_title: Mapped[str | None] = mapped_column(String(16))  # dimse: the peer's (called) AE title
    auth_type: Mapped[str] = mapped_column(String(16), default="none")  # none | bearer | basic
    # Fernet token (platform_core.pacs.crypto) of the auth's JSON; never returned.
    auth_secret: Mapped[bytes | None] = mapped_column(LargeBinary)


class PacsImport(TimestampMixin, Base):
    __tablename__ = "pacs_imports"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # imp_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("pacs_nodes.id", ondelete="CASCADE"), index=True)
    key_type: Mapped[str] = mapped_column(String(20))  # StudyInstanceUID | AccessionNumber
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # The original keys, encrypted with the deployment key while the import runs; NULL once it ends.
    keys_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    studies_total: Mapped[int] = mapped_column(Integer, default=0)
    # Which delivery of the task holds the import, and when it last beat: a stale one is sent again.
    runner: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The MessageID of the C-MOVE in flight: the listener files the sub-operations' C-STOREs under it.
    move_message_id: Mapped[int | None] = mapped_column(Integer, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PacsImportStudy(Base):
    __tablename__ = "pacs_import_studies"

    import_id: Mapped[str] = mapped_column(
        ForeignKey("pacs_imports.id", ondelete="CASCADE"), primary_key=True
    )
    key_hmac: Mapped[str] = mapped_column(String(64), primary_key=True)  # HMAC of the original key
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | not_found | failed
    instances: Mapped[int] = mapped_column(Integer, default=0)
    queued: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(200))


class DicomAssociation(TimestampMixin, Base):
    """One association the listener accepted into a dataset, with its outcome counts."""

    __tablename__ = "dicom_associations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # as_...
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    calling_ae_title: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | released | aborted
    received: Mapped[int] = mapped_column(Integer, default=0)
    queued: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
