"""Datasets: create, get, upload orchestration (DICOM, zips, image datasets), images; views.py shapes them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy.orm import Session

from platform_core.config import Settings
from platform_core.datasets import parts, repository
from platform_core.datasets.ingest import Ingestor
from platform_core.datasets.models import Dataset, Image
from platform_core.datasets.schemas import DatasetCreate, FileOutcome
from platform_core.datasets.uploads import UploadBatch
from platform_core.dicom.read import Caps
from platform_core.errors import Invalid, NotFound
from platform_core.ids import new_id
from platform_core.pacs import titles
from platform_core.storage import ObjectStore


def create_dataset(
    session: Session, project_id: str, body: DatasetCreate, listener_ae_title: str | None = None
) -> Dataset:
    """`listener_ae_title` (the settings' MEDTUNE_DICOM_AE_TITLE) is refused as the dataset's AE title."""
    if body.task == "binary" and len(body.labels) != 1:
        raise Invalid("a binary dataset has exactly one label", param="labels")
    title = titles.free_title(session, body.dicom_ae_title, listener_ae_title, "dicom_ae_title")
    dataset = Dataset(
        id=new_id("ds"),
        project_id=project_id,
        name=body.name,
        task=body.task,
        labels=body.labels,
        options=body.options.model_dump(),
        duplicate_count=0,
        dicom_ae_title=title,
    )
    with titles.claim(session, title, "dicom_ae_title"):
        session.add(dataset)
    return dataset


def get_dataset(session: Session, project_id: str, dataset_id: str) -> Dataset:
    dataset = repository.get_dataset(session, project_id, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset '{dataset_id}'", param="dataset_id")
    return dataset


@dataclass
class Upload:
    """One uploaded part: the name is only echoed back, never stored or logged."""

    filename: str
    file: BinaryIO


def ingest_uploads(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    secret: str,
    dataset: Dataset,
    uploads: Iterable[Upload],
    manifest: bytes | None = None,
) -> list[FileOutcome]:
    """Each file (or zip member) independently: a bad one is rejected with its reason, others go on."""
    with (
        Ingestor(session, store, secret, dataset, caps=Caps.of(settings)) as ingestor,
        UploadBatch(ingestor, settings) as batch,
    ):
        if manifest is not None:
            batch.manifest(manifest)
        for upload in uploads:
            batch.file(upload.filename, upload.file)
        return batch.finish()


def ingest_stream(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    secret: str,
    dataset: Dataset,
    boundary: bytes,
    blocks: Iterable[bytes],
    commit: Callable[[], None] | None = None,
) -> list[FileOutcome]:
    """A multipart/form-data body (`files` parts, an optional `manifest`) ingested as it streams in;
    with `commit`, what is recorded is committed before each block is read (see uploads)."""
    with (
        Ingestor(session, store, secret, dataset, commit, Caps.of(settings)) as ingestor,
        UploadBatch(ingestor, settings) as batch,
    ):
        parts.stream_parts(boundary, blocks, batch.part, settings.max_multipart_parts, batch.checkpoint)
        if not batch.files:
            raise Invalid("send at least one part named 'files'", param="files")
        return batch.finish()


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
