"""Tables for datasets, their studies, labels (keyed by HMAC of the original key) and images.

Nothing here holds an identifier: keys are HMACs, UIDs and patient ids are pseudonyms.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from platform_core.db.base import Base, TimestampMixin


class Dataset(TimestampMixin, Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ds_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(16))  # binary | multilabel
    labels: Mapped[list[Any]]
    options: Mapped[dict[str, Any]]
    # Uploads of an instance already stored; counted here because a duplicate gets no row of its own.
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set by DELETE /v1/datasets/{id}: the row stays so jobs and versions trained on it keep their record.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # The called AE title a PACS C-STOREs to for this dataset (platform_core.pacs); unique per deployment.
    dicom_ae_title: Mapped[str | None] = mapped_column(String(16), unique=True, default=None)


class Study(TimestampMixin, Base):
    __tablename__ = "dataset_studies"
    __table_args__ = (UniqueConstraint("dataset_id", "study_key_hmac"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # st_...
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    # HMAC of the original StudyInstanceUID (DICOM) or patient/study path (image datasets).
    study_key_hmac: Mapped[str] = mapped_column(String(64))
    # HMAC of the original AccessionNumber, when there is one; labels may be keyed by either.
    accession_hmac: Mapped[str | None] = mapped_column(String(64), index=True)
    study_pseudonym: Mapped[str] = mapped_column(String(80))
    patient_pseudonym: Mapped[str] = mapped_column(String(80), index=True)
    sex: Mapped[str | None] = mapped_column(String(8))
    age_years: Mapped[int | None] = mapped_column(Integer)


class StudyLabel(TimestampMixin, Base):
    __tablename__ = "dataset_labels"
    __table_args__ = (UniqueConstraint("dataset_id", "key_hmac"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # lb_...
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    # HMAC of the original AccessionNumber or StudyInstanceUID from the CSV; matches Study keys.
    key_hmac: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]]  # {label: 0|1}
    split: Mapped[str | None] = mapped_column(String(8))  # train | val | test, when the CSV says


class Image(TimestampMixin, Base):
    __tablename__ = "dataset_images"
    __table_args__ = (
        # Idempotency: the same instance uploaded twice (or concurrently) is stored once.
        UniqueConstraint("dataset_id", "sop_instance_uid_pseudonym"),
        Index("ix_dataset_images_dataset_id_status", "dataset_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # img_...
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[str | None] = mapped_column(
        ForeignKey("dataset_studies.id", ondelete="CASCADE"), index=True
    )
    study_pseudonym: Mapped[str | None] = mapped_column(String(80))
    patient_pseudonym: Mapped[str | None] = mapped_column(String(80))
    # NULL for files rejected before an instance could be identified (not_dicom, corrupt, ...).
    sop_instance_uid_pseudonym: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(8), default="dicom")  # dicom | png | jpeg
    status: Mapped[str] = mapped_column(String(16))  # queued | accepted | rejected
    reason: Mapped[str | None] = mapped_column(String(40))
    dicom_key: Mapped[str | None] = mapped_column(String(300))  # the de-identified DICOM (or image)
    cache_key: Mapped[str | None] = mapped_column(String(300))  # the uint16 .npy pixel cache
    pixel_sha256: Mapped[str | None] = mapped_column(String(64))  # platform_core.dicom.cache.content_hash
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    view_position: Mapped[str | None] = mapped_column(String(16))
    # Keyed HMACs of the header's names, IDs and birth date for the burned-in text screen
    # (platform_core.dicom.burned_in); NULL once the pixels are screened, and never a value.
    screen_hashes: Mapped[list[Any] | None]


class DeidCount(Base):
    """What de-identification did in a dataset, summed over its uploads (platform_core.datasets.deid_report).

    Counts and attribute keywords only, never a value: one row per action, and one per attribute an
    option kept. Uploads add to the rows in one upsert each, so concurrent uploads lose no count.
    """

    __tablename__ = "dataset_deid_counts"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # action | kept
    name: Mapped[str] = mapped_column(String(80), primary_key=True)  # the action, or the keyword kept
    option: Mapped[str | None] = mapped_column(String(40))  # kept: the option that kept it
    count: Mapped[int] = mapped_column(BigInteger, default=0)
