"""The erasure record: what was asked (kind and target: an image id, a dataset id or a patient
pseudonym, never an original value) and how much each request removed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from platform_core.db.base import Base, TimestampMixin


class Erasure(TimestampMixin, Base):
    __tablename__ = "erasures"
    __table_args__ = (Index("ix_erasures_project_id_kind_target", "project_id", "kind", "target"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ers_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # image | dataset | patient
    target: Mapped[str] = mapped_column(String(80))  # img_..., ds_..., or the patient pseudonym
    # No foreign key: the record outlives the rows it removed.
    dataset_id: Mapped[str | None] = mapped_column(String(40))
    removed: Mapped[dict[str, Any]]  # counts only
