"""Datasets and their images as the API shows them: counts, image records with their labels, and pages."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from platform_core.datasets import repository
from platform_core.datasets.models import Dataset, Image
from platform_core.datasets.schemas import Counts, DatasetOptions, DatasetOut, ImageOut, LabelCounts
from platform_core.pagination import Page


def counts(session: Session, dataset: Dataset) -> Counts:
    accepted = pending = total = 0
    rejected: dict[str, int] = {}
    for status, reason, n in repository.status_counts(session, dataset.id):
        total += n
        if status == "accepted":
            accepted += n
        elif status == "queued":
            pending += n
        else:
            rejected[reason or "unknown"] = rejected.get(reason or "unknown", 0) + n
    studies, patients = repository.study_stats(session, dataset.id)
    labelled = repository.labelled_studies(session, dataset.id)
    per_label = {name: LabelCounts(positives=0, negatives=0) for name in dataset.labels}
    for labels in labelled:
        for name, value in labels.items():
            if name in per_label:
                if int(value) == 1:
                    per_label[name].positives += 1
                else:
                    per_label[name].negatives += 1
    return Counts(
        received=total + dataset.duplicate_count,
        accepted=accepted,
        rejected=rejected,
        duplicates=dataset.duplicate_count,
        pending=pending,
        studies=studies,
        patients=patients,
        labelled_studies=len(labelled),
        labels=per_label,
    )


def dataset_out(session: Session, dataset: Dataset) -> DatasetOut:
    c = counts(session, dataset)
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        task=dataset.task,
        labels=list(dataset.labels),
        options=DatasetOptions.model_validate(dataset.options),
        dicom_ae_title=dataset.dicom_ae_title,
        status="ingesting" if c.pending else "ready",
        counts=c,
        created_at=dataset.created_at,
    )


def list_datasets(session: Session, project_id: str, limit: int, after: str | None) -> Page[DatasetOut]:
    rows = repository.list_datasets(session, project_id, limit + 1, after)
    return Page.build(rows, limit, lambda d: dataset_out(session, d))


def list_images(
    session: Session, dataset: Dataset, status: str | None, limit: int, after: str | None
) -> Page[ImageOut]:
    rows = repository.list_images(session, dataset.id, status, limit + 1, after)
    # The labels of the page's studies in one query, not one per image.
    labels = repository.labels_for_studies(
        session, dataset.id, sorted({i.study_id for i in rows[:limit] if i.study_id})
    )
    return Page.build(rows, limit, lambda i: image_out(i, labels))


def image_out(i: Image, labels: dict[str, dict[str, Any]]) -> ImageOut:
    return ImageOut(
        id=i.id,
        status=i.status,
        reason=i.reason,
        source=i.source,
        study_pseudonym=i.study_pseudonym,
        patient_pseudonym=i.patient_pseudonym,
        sop_instance_uid_pseudonym=i.sop_instance_uid_pseudonym,
        labels={k: int(v) for k, v in labels[i.study_id].items()} if i.study_id in labels else None,
        rows=i.rows,
        columns=i.columns,
        size_bytes=i.size_bytes,
        modality=i.modality,
        body_part=i.body_part,
        view_position=i.view_position,
        pixel_sha256=i.pixel_sha256,
        created_at=i.created_at,
    )
