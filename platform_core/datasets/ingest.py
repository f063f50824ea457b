"""One file through the pipeline in the API process: parse, filter, de-identify in memory, store, record.

Identified bytes exist only in the caller's memory (or its private spool file); what reaches the
object store and the database is already de-identified.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom import dcmread
from sqlalchemy.orm import Session

from platform_core.datasets import repository
from platform_core.datasets.models import Dataset, Image
from platform_core.datasets.schemas import DatasetOptions
from platform_core.db import outbox
from platform_core.dicom import cache, pixels
from platform_core.dicom.deid import Deidentifier, Options
from platform_core.dicom.read import Rejected, parse
from platform_core.dicom.validate import Filters, check
from platform_core.ids import new_id
from platform_core.storage import ObjectStore

TASK = "ingest.process_image"
DICOM_TYPE = "application/dicom"
PREAMBLE = b"\x00" * 128


@dataclass(frozen=True)
class Outcome:
    outcome: str  # queued | duplicate | rejected
    reason: str | None = None
    image_id: str | None = None


def options_of(dataset: Dataset) -> DatasetOptions:
    return DatasetOptions.model_validate(dataset.options)


def filters_of(opts: DatasetOptions) -> Filters:
    return Filters(opts.min_image_size, frozenset(opts.modalities), opts.burned_in_annotation)


def deidentifier(secret: str, opts: DatasetOptions) -> Deidentifier:
    return Deidentifier(secret, Options(opts.dates, opts.retain_patient_characteristics))


def reject(session: Session, dataset: Dataset, reason: str, source: str = "dicom") -> Outcome:
    image = Image(id=new_id("img"), dataset_id=dataset.id, source=source, status="rejected", reason=reason)
    session.add(image)
    session.flush()
    return Outcome("rejected", reason, image.id)


def ingest_dicom(session: Session, store: ObjectStore, secret: str, dataset: Dataset, data: bytes) -> Outcome:
    opts = options_of(dataset)
    try:
        parsed = parse(data)
        check(parsed.dataset, filters_of(opts))
        result = deidentifier(secret, opts)(parsed.dataset)
    except Rejected as exc:
        return reject(session, dataset, exc.reason)
    ds = result.dataset
    if not result.sop_instance_uid_pseudonym or not result.study_pseudonym:
        return reject(session, dataset, "corrupt")
    buf = io.BytesIO()
    ds.preamble = PREAMBLE  # the preamble is free-form bytes: it may carry anything
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception:
        return reject(session, dataset, "corrupt")
    encoded = buf.getvalue()

    study = repository.get_or_create_study(
        session,
        dataset.id,
        result.study_key_hmac,
        accession_hmac=result.accession_hmac,
        study_pseudonym=result.study_pseudonym,
        patient_pseudonym=result.patient_pseudonym,
        sex=result.sex,
        age_years=result.age_years,
    )
    key = f"datasets/{dataset.id}/dicom/{result.sop_instance_uid_pseudonym}.dcm"
    image = Image(
        id=new_id("img"),
        dataset_id=dataset.id,
        study_id=study.id,
        study_pseudonym=result.study_pseudonym,
        patient_pseudonym=result.patient_pseudonym,
        sop_instance_uid_pseudonym=result.sop_instance_uid_pseudonym,
        source="dicom",
        status="queued",
        dicom_key=key,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        size_bytes=len(encoded),
        modality=_short(ds.get("Modality"), 16),
        body_part=_short(ds.get("BodyPartExamined"), 64),
        view_position=_short(ds.get("ViewPosition"), 16),
    )
    if not repository.insert_image(session, image):
        repository.add_duplicates(session, dataset.id, 1)
        return Outcome("duplicate")
    # The key is derived from the pseudonymous instance UID: a retried upload rewrites the same object.
    store.put_bytes(key, encoded, DICOM_TYPE)
    outbox.enqueue(session, TASK, image.id, queue="ingest")
    return Outcome("queued", None, image.id)


def _short(value: object, n: int) -> str | None:
    text = str(value or "").strip()
    return text[:n] or None


def process_image(session: Session, store: ObjectStore, image_id: str) -> str | None:
    """Worker side: decode once, window, resize, write the pixel cache. Idempotent; returns the status."""
    image = session.get(Image, image_id)
    if image is None or image.status != "queued" or image.dicom_key is None:
        return image.status if image else None
    dataset = session.get(Dataset, image.dataset_id)
    assert dataset is not None
    opts = options_of(dataset)
    try:
        data = store.get_bytes(image.dicom_key)
        if image.source == "dicom":
            img = pixels.decode(dcmread(io.BytesIO(data)))
        else:
            img = pixels.decode_image(data)
        arr = pixels.to_cache(img, opts.cache_size)
    except Rejected as exc:
        image.status, image.reason = "rejected", exc.reason
        store.delete(image.dicom_key)
        image.dicom_key = None
        session.flush()
        return image.status
    key = f"datasets/{dataset.id}/cache/{image.id}.png"
    store.put_bytes(key, cache.encode(arr), cache.CONTENT_TYPE)
    image.cache_key = key
    image.pixel_sha256 = cache.content_hash(arr)
    image.status, image.reason = "accepted", None
    session.flush()
    return image.status
