"""Queries on datasets, studies, labels and images; the service decides, this reads and writes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from platform_core.datasets.models import Dataset, Image, Study, StudyLabel
from platform_core.db.base import utcnow
from platform_core.ids import new_id


def get_dataset(session: Session, project_id: str, dataset_id: str) -> Dataset | None:
    # A deleted dataset (platform_core.erasure) keeps its row for the jobs trained on it, for nobody else.
    return session.scalar(
        select(Dataset).where(
            Dataset.id == dataset_id, Dataset.project_id == project_id, Dataset.deleted_at.is_(None)
        )
    )


def find_dataset(session: Session, dataset_id: str) -> Dataset | None:
    """The dataset by id alone, deleted or not: a job trained on it still reads its pixel settings."""
    return session.get(Dataset, dataset_id)


def dataset_by_ae(session: Session, ae_title: str) -> Dataset | None:
    """The live dataset whose DICOM listener answers to this called AE title."""
    return session.scalar(
        select(Dataset).where(Dataset.dicom_ae_title == ae_title.strip(), Dataset.deleted_at.is_(None))
    )


def ae_title_used(session: Session, ae_title: str) -> bool:
    """Whether any dataset, deleted or not, answers to this called AE title."""
    return bool(session.scalar(select(func.count()).where(Dataset.dicom_ae_title == ae_title)))


def list_datasets(session: Session, project_id: str, limit: int, after: str | None) -> Sequence[Dataset]:
    q = select(Dataset).where(Dataset.project_id == project_id, Dataset.deleted_at.is_(None))
    if after:
        q = q.where(Dataset.id < after)
    return session.scalars(q.order_by(Dataset.id.desc()).limit(limit)).all()


def add_duplicates(session: Session, dataset_id: str, n: int) -> None:
    session.execute(
        update(Dataset).where(Dataset.id == dataset_id).values(duplicate_count=Dataset.duplicate_count + n)
    )


def _insert(session: Session, model: type[Study] | type[Image]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on either database: one statement, no savepoint, and on the
    table rather than the ORM entity (no unit-of-work bookkeeping for rows nobody reads back)."""
    table: Table = model.__table__  # type: ignore[assignment]
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def ensure_study(session: Session, dataset_id: str, study_key_hmac: str, **values: Any) -> str:
    """The study's id; concurrent uploads of one study meet at the unique constraint, not a race."""
    stmt = (
        _insert(session, Study)
        .values(
            id=new_id("st"),
            dataset_id=dataset_id,
            study_key_hmac=study_key_hmac,
            created_at=utcnow(),
            **values,
        )
        .on_conflict_do_nothing(index_elements=["dataset_id", "study_key_hmac"])
        .returning(Study.__table__.c.id)
    )
    created = session.scalar(stmt)
    if created is not None:
        return str(created)
    found = session.scalar(
        select(Study.id).where(Study.dataset_id == dataset_id, Study.study_key_hmac == study_key_hmac)
    )
    assert found is not None
    return str(found)


def get_or_create_study(session: Session, dataset_id: str, study_key_hmac: str, **values: Any) -> Study:
    study = session.get(Study, ensure_study(session, dataset_id, study_key_hmac, **values))
    assert study is not None
    return study


def insert_image_row(session: Session, **values: Any) -> bool:
    """Insert one image row; False when the instance is already in the dataset (the unique constraint
    on (dataset_id, sop_instance_uid_pseudonym) decides, so concurrent uploads store it once)."""
    stmt = (
        _insert(session, Image)
        .values(created_at=utcnow(), **values)
        .on_conflict_do_nothing(index_elements=["dataset_id", "sop_instance_uid_pseudonym"])
        .returning(Image.__table__.c.id)
    )
    return session.scalar(stmt) is not None


def finish_image(
    session: Session, image_id: str, status: str, reason: str | None, cache_key: str | None, sha: str | None
) -> bool:
    """Record the pixel work's outcome on a still-queued image; False when someone already did."""
    values: dict[str, Any] = {"status": status, "reason": reason, "cache_key": cache_key, "pixel_sha256": sha}
    values["screen_hashes"] = None  # screened (or rejected unscreened): the hashes have served
    if status == "rejected":
        values["dicom_key"] = None
    result = session.execute(
        update(Image).where(Image.id == image_id, Image.status == "queued").values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


def images_by_id(session: Session, image_ids: Sequence[str]) -> dict[str, Image]:
    return {i.id: i for i in session.scalars(select(Image).where(Image.id.in_(list(image_ids))))}


def cache_keys(session: Session, image_ids: Sequence[str]) -> dict[str, str | None]:
    """Each image's pixel-cache key, read in chunks of 1000 ids."""
    keys: dict[str, str | None] = {}
    for i in range(0, len(image_ids), 1000):
        chunk = list(image_ids[i : i + 1000])
        for image_id, cache_key in session.execute(
            select(Image.id, Image.cache_key).where(Image.id.in_(chunk))
        ):
            keys[image_id] = cache_key
    return keys


def image_attributes(session: Session, image_ids: Sequence[str]) -> dict[str, Any]:
    """Per image id, its row of subgroup attributes (view position, modality, its study's sex and age,
    where its DICOM is and the keys its labels are matched by), read in chunks of 1000 ids."""
    rows: dict[str, Any] = {}
    ids = list(image_ids)
    for i in range(0, len(ids), 1000):
        q = (
            select(
                Image.id,
                Image.view_position,
                Image.modality,
                Study.sex,
                Study.age_years,
                Image.dataset_id,
                Image.source,
                Image.dicom_key,
                Study.study_key_hmac,
                Study.accession_hmac,
            )
            .outerjoin(Study, Study.id == Image.study_id)
            .where(Image.id.in_(ids[i : i + 1000]))
        )
        rows.update({r[0]: r for r in session.execute(q)})
    return rows


def labelled_accepted(
    session: Session, dataset_id: str
) -> Iterable[tuple[str, str, str, str | None, Any, str | None, bool]]:
    """Accepted images whose study has a label row, with the study's pseudonyms, the image's pixel hash,
    the label row and whether it matched by accession number; ordered by image, then label row."""
    stmt = (
        select(
            Image.id,
            Study.study_pseudonym,
            Study.patient_pseudonym,
            Image.pixel_sha256,
            StudyLabel.labels,
            StudyLabel.split,
            # A label keyed by AccessionNumber wins over one keyed by StudyInstanceUID.
            (StudyLabel.key_hmac == Study.accession_hmac).label("by_accession"),
        )
        .join(Study, Study.id == Image.study_id)
        .join(
            StudyLabel,
            (StudyLabel.dataset_id == Study.dataset_id)
            & or_(StudyLabel.key_hmac == Study.study_key_hmac, StudyLabel.key_hmac == Study.accession_hmac),
        )
        .where(Image.dataset_id == dataset_id, Image.status == "accepted")
        .order_by(Image.id, StudyLabel.id)
    )
    return session.execute(stmt).tuples()


def get_image(session: Session, dataset_id: str, image_id: str) -> Image | None:
    return session.scalar(select(Image).where(Image.id == image_id, Image.dataset_id == dataset_id))


def list_images(
    session: Session, dataset_id: str, status: str | None, limit: int, after: str | None
) -> Sequence[Image]:
    q = select(Image).where(Image.dataset_id == dataset_id)
    if status:
        q = q.where(Image.status == status)
    if after:
        q = q.where(Image.id > after)
    return session.scalars(q.order_by(Image.id).limit(limit)).all()


def status_counts(session: Session, dataset_id: str) -> list[tuple[str, str | None, int]]:
    rows = session.execute(
        select(Image.status, Image.reason, func.count())
        .where(Image.dataset_id == dataset_id)
        .group_by(Image.status, Image.reason)
    ).all()
    return [(r[0], r[1], int(r[2])) for r in rows]


def study_stats(session: Session, dataset_id: str) -> tuple[int, int]:
    """Studies and patients with at least one image that was not rejected."""
    usable = select(Image.study_id).where(Image.dataset_id == dataset_id, Image.status != "rejected")
    row = session.execute(
        select(func.count(Study.id), func.count(func.distinct(Study.patient_pseudonym))).where(
            Study.dataset_id == dataset_id, Study.id.in_(usable)
        )
    ).one()
    return int(row[0]), int(row[1])


def labelled_studies(session: Session, dataset_id: str) -> list[dict[str, Any]]:
    """The label dicts of studies (with a usable image) whose key matches a label row."""
    usable = select(Image.study_id).where(Image.dataset_id == dataset_id, Image.status != "rejected")
    return list(_labels_by_study(session, dataset_id, Study.id.in_(usable)).values())


def labels_for_studies(session: Session, dataset_id: str, study_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not study_ids:
        return {}
    return _labels_by_study(session, dataset_id, Study.id.in_(study_ids))


def _labels_by_study(
    session: Session, dataset_id: str, studies: ColumnElement[bool]
) -> dict[str, dict[str, Any]]:
    """The first label dict per study among `studies`: a label row matches its key or its accession."""
    rows = session.execute(
        select(Study.id, StudyLabel.labels)
        .join(
            StudyLabel,
            (StudyLabel.dataset_id == Study.dataset_id)
            & or_(StudyLabel.key_hmac == Study.study_key_hmac, StudyLabel.key_hmac == Study.accession_hmac),
        )
        .where(Study.dataset_id == dataset_id, studies)
    ).all()
    out: dict[str, dict[str, Any]] = {}
    for study_id, labels in rows:
        out.setdefault(study_id, dict(labels))
    return out


def upsert_label(
    session: Session, dataset_id: str, key_hmac: str, labels: dict[str, int], split: str | None
) -> None:
    found = session.scalar(
        select(StudyLabel).where(StudyLabel.dataset_id == dataset_id, StudyLabel.key_hmac == key_hmac)
    )
    if found is not None:
        found.labels = {**found.labels, **labels}
        if split is not None:
            found.split = split
        return
    row = StudyLabel(id=new_id("lb"), dataset_id=dataset_id, key_hmac=key_hmac, labels=labels, split=split)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        upsert_label(session, dataset_id, key_hmac, labels, split)


def matched_keys(session: Session, dataset_id: str, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    a = session.scalars(
        select(Study.study_key_hmac).where(Study.dataset_id == dataset_id, Study.study_key_hmac.in_(keys))
    ).all()
    b = session.scalars(
        select(Study.accession_hmac).where(Study.dataset_id == dataset_id, Study.accession_hmac.in_(keys))
    ).all()
    return {k for k in (*a, *b) if k}
