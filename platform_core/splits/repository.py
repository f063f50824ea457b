"""Queries for dataset versions and splits; the service decides, this reads and writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from platform_core.datasets import repository as datasets
from platform_core.errors import NotFound
from platform_core.splits.algorithm import ImageRow
from platform_core.splits.models import DatasetVersion, DatasetVersionImage, Split, SplitAssignment

CHUNK = 5000
TRUE = {"1", "1.0", "true", "yes", "y", "positive", "pos"}
FALSE = {"0", "0.0", "false", "no", "n", "negative", "neg"}


def label_value(value: Any) -> int | None:
    """A stored label cell as 1, 0 or None (unknown); the label table holds 0|1 but be lenient."""
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, int | float):
        return int(value) if value in (0, 1) else None
    text = str(value).strip().lower()
    return 1 if text in TRUE else 0 if text in FALSE else None


def live_rows(session: Session, dataset_id: str, label_names: Sequence[str]) -> list[ImageRow]:
    """The dataset as it is now: accepted images whose study has a label row, sorted by image id."""
    rows: dict[str, ImageRow] = {}
    preferred: dict[str, bool] = {}
    found = datasets.labelled_accepted(session, dataset_id)
    for image_id, study, patient, pixels, labels, split, by_accession in found:
        if image_id in rows and (preferred[image_id] or not by_accession):
            continue
        values = dict(labels or {})
        rows[image_id] = ImageRow(
            image_id=image_id,
            study_pseudonym=study,
            patient_pseudonym=patient,
            labels={name: label_value(values.get(name)) for name in sorted(label_names)},
            pixel_sha256=pixels,
            user_split=split,
        )
        preferred[image_id] = bool(by_accession)
    return [rows[k] for k in sorted(rows)]


def version_by_hash(session: Session, dataset_id: str, content_sha256: str) -> DatasetVersion | None:
    return session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.content_sha256 == content_sha256
        )
    )


def next_version_number(session: Session, dataset_id: str) -> int:
    current = session.scalar(
        select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset_id == dataset_id)
    )
    return int(current or 0) + 1


def insert_version_rows(session: Session, version_id: str, rows: Sequence[ImageRow]) -> None:
    values = [
        {
            "version_id": version_id,
            "image_id": r.image_id,
            "study_pseudonym": r.study_pseudonym,
            "patient_pseudonym": r.patient_pseudonym,
            "pixel_sha256": r.pixel_sha256,
            "labels": dict(r.labels),
            "user_split": r.user_split,
        }
        for r in rows
    ]
    for i in range(0, len(values), CHUNK):
        session.execute(insert(DatasetVersionImage), values[i : i + CHUNK])


def get_version(session: Session, project_id: str, dataset_id: str, version_id: str) -> DatasetVersion:
    version = session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.id == version_id,
            DatasetVersion.project_id == project_id,
            DatasetVersion.dataset_id == dataset_id,
        )
    )
    if version is None:
        raise NotFound(f"no dataset version {version_id} in dataset {dataset_id}")
    return version


def list_versions(
    session: Session, dataset_id: str, limit: int, after: str | None
) -> Sequence[DatasetVersion]:
    q = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)
    if after:
        q = q.where(DatasetVersion.id < after)
    return session.scalars(q.order_by(DatasetVersion.id.desc()).limit(limit)).all()


def version_rows(session: Session, version_id: str) -> list[ImageRow]:
    stmt = (
        select(DatasetVersionImage)
        .where(DatasetVersionImage.version_id == version_id)
        .order_by(DatasetVersionImage.image_id)
    )
    return [
        ImageRow(
            image_id=r.image_id,
            study_pseudonym=r.study_pseudonym,
            patient_pseudonym=r.patient_pseudonym,
            labels=dict(r.labels),
            pixel_sha256=r.pixel_sha256,
            user_split=r.user_split,
        )
        for r in session.scalars(stmt)
    ]


def insert_assignment(session: Session, split_id: str, assignment: dict[str, str]) -> None:
    values = [{"split_id": split_id, "image_id": k, "split": v} for k, v in sorted(assignment.items())]
    for i in range(0, len(values), CHUNK):
        session.execute(insert(SplitAssignment), values[i : i + CHUNK])


def assignment(session: Session, split_id: str) -> dict[str, str]:
    stmt = (
        select(SplitAssignment.image_id, SplitAssignment.split)
        .where(SplitAssignment.split_id == split_id)
        .order_by(SplitAssignment.image_id)
    )
    return {image_id: split for image_id, split in session.execute(stmt)}


def get_split(
    session: Session, split_id: str, project_id: str | None = None, dataset_id: str | None = None
) -> Split:
    q = select(Split).where(Split.id == split_id)
    if project_id is not None:
        q = q.where(Split.project_id == project_id)
    if dataset_id is not None:
        q = q.where(Split.dataset_id == dataset_id)
    split = session.scalar(q)
    if split is None:
        raise NotFound(f"no split {split_id}" + (f" in dataset {dataset_id}" if dataset_id else ""))
    return split


def find_version(session: Session, version_id: str) -> DatasetVersion | None:
    return session.get(DatasetVersion, version_id)


def part_labels(session: Session, split: Split, part: str) -> list[tuple[str, dict[str, Any]]]:
    """The images of one part of a split with their labels in its dataset version, by image id."""
    q = (
        select(SplitAssignment.image_id, DatasetVersionImage.labels)
        .join(
            DatasetVersionImage,
            (DatasetVersionImage.image_id == SplitAssignment.image_id)
            & (DatasetVersionImage.version_id == split.dataset_version_id),
        )
        .where(SplitAssignment.split_id == split.id, SplitAssignment.split == part)
        .order_by(SplitAssignment.image_id)
    )
    return [(image_id, dict(labels or {})) for image_id, labels in session.execute(q).tuples()]


def find_split(session: Session, split_id: str | None) -> Split | None:
    """The split `split_id`, or None when there is none (or no id)."""
    return session.get(Split, split_id) if split_id else None


def list_splits(session: Session, dataset_id: str, limit: int, after: str | None) -> Sequence[Split]:
    q = select(Split).where(Split.dataset_id == dataset_id)
    if after:
        q = q.where(Split.id < after)
    return session.scalars(q.order_by(Split.id.desc()).limit(limit)).all()
