"""Tables for frozen dataset versions and the splits made from them.

A dataset version copies, at one moment, the accepted and labelled images of a dataset (image id,
study and patient pseudonyms, pixel hash, labels, the user's split column) so it never changes when
uploads or labels arrive later; its content_sha256 identifies that content. A split records how
the version was divided (seed and exact fractions, or the user's column), the assignment of every
image, and the sha256 of its canonical manifest.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from platform_core.db.base import Base, TimestampMixin


class DatasetVersion(TimestampMixin, Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "content_sha256"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # dsv_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the dataset, for people
    content_sha256: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(16))
    label_names: Mapped[list[Any]]
    image_count: Mapped[int] = mapped_column(Integer)
    study_count: Mapped[int] = mapped_column(Integer)
    patient_count: Mapped[int] = mapped_column(Integer)
    # Images of this version removed by an erasure since it was frozen (their rows are gone too).
    erased_members: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DatasetVersionImage(Base):
    __tablename__ = "dataset_version_images"

    version_id: Mapped[str] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True
    )
    # No foreign key to dataset_images: the version must outlive edits to the live tables.
    image_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    study_pseudonym: Mapped[str] = mapped_column(String(80))
    patient_pseudonym: Mapped[str] = mapped_column(String(80))
    pixel_sha256: Mapped[str | None] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]]  # {label: 1 | 0 | None}
    user_split: Mapped[str | None] = mapped_column(String(16))


class Split(TimestampMixin, Base):
    __tablename__ = "splits"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # spl_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    dataset_version_id: Mapped[str] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(16))  # seeded | column
    seed: Mapped[int | None] = mapped_column(BigInteger)
    seed_drawn: Mapped[bool] = mapped_column(Boolean, default=False)
    # Exact rationals as text ("7/10"), so the split can be re-made bit for bit; None for a column split.
    fractions: Mapped[dict[str, Any] | None]
    algorithm: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]]
    # Images of this manifest removed by an erasure; sha256 stays the hash of the manifest as made.
    erased_members: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def fractions_text(self) -> tuple[str, str, str]:
        if self.fractions is None:
            raise ValueError(f"split {self.id} was taken from a column and has no fractions")
        return (self.fractions["train"], self.fractions["val"], self.fractions["test"])


class SplitAssignment(Base):
    __tablename__ = "split_assignments"

    split_id: Mapped[str] = mapped_column(ForeignKey("splits.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    split: Mapped[str] = mapped_column(String(8))
