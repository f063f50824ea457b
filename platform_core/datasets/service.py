"""Datasets: create, read with counts, upload orchestration (DICOM, zips, image datasets), images."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy.orm import Session

from platform_core.config import Settings
from platform_core.datasets import archives, imaging, repository
from platform_core.datasets.ingest import Ingestor, Outcome
from platform_core.datasets.models import Dataset, Image
from platform_core.datasets.schemas import (
    Counts,
    DatasetCreate,
    DatasetOptions,
    DatasetOut,
    FileOutcome,
    ImageOut,
    LabelCounts,
)
from platform_core.dicom.read import Rejected
from platform_core.errors import Invalid, NotFound
from platform_core.ids import new_id
from platform_core.storage import ObjectStore


def create_dataset(session: Session, project_id: str, body: DatasetCreate) -> Dataset:
    if body.task == "binary" and len(body.labels) != 1:
        raise Invalid("a binary dataset has exactly one label", param="labels")
    dataset = Dataset(
        id=new_id("ds"),
        project_id=project_id,
        name=body.name,
        task=body.task,
        labels=body.labels,
        options=body.options.model_dump(),
        duplicate_count=0,
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, project_id: str, dataset_id: str) -> Dataset:
    dataset = repository.get_dataset(session, project_id, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset '{dataset_id}'", param="dataset_id")
    return dataset


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
        status="ingesting" if c.pending else "ready",
        counts=c,
        created_at=dataset.created_at,
    )


@dataclass
class Upload:
    """One uploaded part: the name is only echoed back, never stored or logged."""

    filename: str
    file: BinaryIO


def _limits(settings: Settings) -> archives.Limits:
    return archives.Limits(
        max_total_bytes=settings.max_zip_uncompressed_bytes,
        max_ratio=settings.max_zip_ratio,
        max_member_bytes=settings.max_upload_bytes,
    )


def ingest_uploads(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    secret: str,
    dataset: Dataset,
    uploads: Iterable[Upload],
    manifest: bytes | None = None,
) -> list[FileOutcome]:
    """Each part (or zip member) independently: a bad one is rejected with its reason, others go on."""
    table = imaging.Manifest(manifest, dataset) if manifest is not None else None
    with Ingestor(session, store, secret, dataset) as ingestor:
        return _ingest(ingestor, settings, uploads, table)


def _ingest(
    ingestor: Ingestor, settings: Settings, uploads: Iterable[Upload], table: imaging.Manifest | None
) -> list[FileOutcome]:
    out: list[FileOutcome] = []
    for index, upload in enumerate(uploads):
        head = upload.file.read(8)
        upload.file.seek(0)
        if archives.is_zip(head):
            try:
                for member in archives.members(upload.file, _limits(settings)):
                    name = f"{upload.filename}/{member.path}"
                    if member.data is None:
                        result = ingestor.reject(member.reason or "corrupt")
                    else:
                        result = _one(ingestor, member.data, member.path, table)
                    out.append(_outcome(index, name, result))
            except Rejected as exc:
                out.append(_outcome(index, upload.filename, ingestor.reject(exc.reason)))
            continue
        data = _read_limited(upload.file, settings.max_upload_bytes)
        if data is None:
            result = ingestor.reject("too_large")
        else:
            result = _one(ingestor, data, upload.filename, table)
        out.append(_outcome(index, upload.filename, result))
    ingestor.finish()
    return out


def _read_limited(fh: BinaryIO, limit: int) -> bytes | None:
    data = fh.read(limit + 1)
    return None if len(data) > limit else data


def _one(ingestor: Ingestor, data: bytes, path: str, table: imaging.Manifest | None) -> Outcome:
    if imaging.is_image(data[:8]):
        meta = table.find(path) if table is not None else imaging.mura_meta(path, ingestor.dataset)
        if meta is None:
            return ingestor.reject("not_in_manifest" if table is not None else "unlabelled_image")
        return imaging.ingest_image(ingestor, data, meta)
    return ingestor.dicom(data)


def _outcome(index: int, filename: str, result: Outcome) -> FileOutcome:
    return FileOutcome(
        index=index, filename=filename, outcome=result.outcome, reason=result.reason, image_id=result.image_id
    )


def list_images(
    session: Session, dataset: Dataset, status: str | None, limit: int, after: str | None
) -> tuple[list[ImageOut], bool]:
    rows = list(repository.list_images(session, dataset.id, status, limit + 1, after))
    page = rows[:limit]
    labels = repository.labels_for_studies(
        session, dataset.id, sorted({i.study_id for i in page if i.study_id})
    )
    data = [
        ImageOut(
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
        for i in page
    ]
    return data, len(rows) > limit


def get_image(session: Session, dataset: Dataset, image_id: str) -> Image:
    image = repository.get_image(session, dataset.id, image_id)
    if image is None:
        raise NotFound(f"no image '{image_id}' in this dataset", param="image_id")
    return image


def open_dicom(session: Session, store: ObjectStore, dataset: Dataset, image_id: str) -> Iterator[bytes]:
    image = get_image(session, dataset, image_id)
    if image.source != "dicom" or image.dicom_key is None:
        raise NotFound(f"image '{image_id}' has no stored DICOM", param="image_id")
    try:
        return store.open(image.dicom_key)
    except KeyError:
        raise NotFound(f"image '{image_id}' has no stored DICOM", param="image_id") from None
