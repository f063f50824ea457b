"""Queries for erasure: find what held the images, remove their rows, mark what trained on them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from platform_core.datasets.models import Dataset, Image, Study, StudyLabel
from platform_core.erasure.models import Erasure
from platform_core.jobs.models import Job
from platform_core.registry.models import BatchPrediction, ModelVersion
from platform_core.splits.models import DatasetVersion, DatasetVersionImage, Split, SplitAssignment
from platform_core.training.evaluation import PREDICTIONS_FILE

CHUNK = 1000


def chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK)]


def dataset_any_state(session: Session, project_id: str, dataset_id: str) -> Dataset | None:
    """The project's dataset, deleted or not (a deleted one answers a repeated DELETE with zero)."""
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.project_id == project_id))


def project_dataset_ids(session: Session, project_id: str) -> list[str]:
    return list(session.scalars(select(Dataset.id).where(Dataset.project_id == project_id)))


def image_in(session: Session, dataset_id: str, image_id: str) -> Image | None:
    return session.scalar(select(Image).where(Image.id == image_id, Image.dataset_id == dataset_id))


def dataset_images(session: Session, dataset_id: str) -> list[Image]:
    return list(session.scalars(select(Image).where(Image.dataset_id == dataset_id)))


def patient_images(session: Session, dataset_ids: Sequence[str], patient: str) -> list[Image]:
    if not dataset_ids:
        return []
    by_study = select(Study.id).where(Study.dataset_id.in_(dataset_ids), Study.patient_pseudonym == patient)
    q = select(Image).where(
        Image.dataset_id.in_(dataset_ids),
        or_(Image.patient_pseudonym == patient, Image.study_id.in_(by_study)),
    )
    return list(session.scalars(q))


def patient_studies(session: Session, dataset_ids: Sequence[str], patient: str) -> list[str]:
    if not dataset_ids:
        return []
    q = select(Study.id).where(Study.dataset_id.in_(dataset_ids), Study.patient_pseudonym == patient)
    return list(session.scalars(q))


def dataset_studies(session: Session, dataset_id: str) -> list[str]:
    return list(session.scalars(select(Study.id).where(Study.dataset_id == dataset_id)))


def counts_by(
    session: Session,
    column: InstrumentedAttribute[str],
    key: InstrumentedAttribute[str],
    image_ids: Sequence[str],
) -> dict[str, int]:
    """column value -> rows whose key is one of image_ids."""
    out: dict[str, int] = {}
    for part in chunks(image_ids):
        q = select(column, func.count()).where(key.in_(part)).group_by(column)
        for owner, n in session.execute(q).tuples():
            out[owner] = out.get(owner, 0) + int(n)
    return out


def mark_versions(session: Session, image_ids: Sequence[str]) -> dict[str, int]:
    """dataset_version id -> images of it erased; their frozen rows are deleted and the version marked."""
    hit = counts_by(session, DatasetVersionImage.version_id, DatasetVersionImage.image_id, image_ids)
    for version_id, n in hit.items():
        session.execute(
            update(DatasetVersion)
            .where(DatasetVersion.id == version_id)
            .values(erased_members=DatasetVersion.erased_members + n)
        )
    for part in chunks(image_ids):
        session.execute(delete(DatasetVersionImage).where(DatasetVersionImage.image_id.in_(part)))
    return hit


def mark_splits(session: Session, image_ids: Sequence[str]) -> dict[str, int]:
    """split id -> images of its manifest erased; their assignment rows are deleted and the split marked."""
    hit = counts_by(session, SplitAssignment.split_id, SplitAssignment.image_id, image_ids)
    for split_id, n in hit.items():
        session.execute(
            update(Split).where(Split.id == split_id).values(erased_members=Split.erased_members + n)
        )
    for part in chunks(image_ids):
        session.execute(delete(SplitAssignment).where(SplitAssignment.image_id.in_(part)))
    return hit


def mark_jobs(session: Session, split_ids: Sequence[str], version_ids: Sequence[str]) -> list[Job]:
    """Jobs trained (or training) on a marked split or version: flagged data_erased."""
    if not split_ids and not version_ids:
        return []
    q = select(Job).where(
        or_(Job.split_id.in_(list(split_ids)), Job.dataset_version_id.in_(list(version_ids)))
    )
    jobs = list(session.scalars(q))
    for job in jobs:
        job.data_erased = True
    return jobs


def mark_model_versions(session: Session, job_ids: Sequence[str]) -> int:
    if not job_ids:
        return 0
    versions = list(session.scalars(select(ModelVersion).where(ModelVersion.job_id.in_(list(job_ids)))))
    for v in versions:
        v.data_erased = True
    return len(versions)


def prediction_documents(session: Session, jobs: Sequence[Job]) -> list[str]:
    """Object keys of the per-image test predictions stored by these jobs and their model versions."""
    keys = [(j.result or {}).get("artifacts", {}).get(PREDICTIONS_FILE) for j in jobs]
    if jobs:
        q = select(ModelVersion.prefix).where(ModelVersion.job_id.in_([j.id for j in jobs]))
        keys += [f"{prefix}/{PREDICTIONS_FILE}" for prefix in session.scalars(q)]
    return [k for k in keys if k]


def batch_outputs(session: Session, split_ids: Sequence[str]) -> list[str]:
    """Object keys of batch-prediction CSVs made on the marked splits (they list image ids)."""
    if not split_ids:
        return []
    q = select(BatchPrediction.output_key).where(
        BatchPrediction.split_id.in_(list(split_ids)), BatchPrediction.output_key.is_not(None)
    )
    return [k for k in session.scalars(q) if k]


def delete_images(session: Session, image_ids: Sequence[str]) -> int:
    n = 0
    for part in chunks(image_ids):
        n += _rowcount(session.execute(delete(Image).where(Image.id.in_(part))))
    return n


def orphaned_studies(session: Session, study_ids: Sequence[str]) -> list[str]:
    """Of these studies, those without an image left."""
    if not study_ids:
        return []
    with_images = select(Image.study_id).where(Image.study_id.in_(list(study_ids)))
    q = select(Study.id).where(Study.id.in_(list(study_ids)), Study.id.not_in(with_images))
    return list(session.scalars(q))


def study_keys(session: Session, study_ids: Sequence[str]) -> dict[str, set[str]]:
    """{dataset id: the study key and accession HMACs of these studies}: what their labels are keyed by."""
    found: dict[str, set[str]] = {}
    for part in chunks(study_ids):
        rows = session.execute(
            select(Study.dataset_id, Study.study_key_hmac, Study.accession_hmac).where(Study.id.in_(part))
        ).tuples()
        for dataset_id, study_key, accession in rows:
            found.setdefault(dataset_id, set()).update(k for k in (study_key, accession) if k)
    return found


def delete_studies(session: Session, study_ids: Sequence[str]) -> tuple[int, int]:
    """Delete the studies and the label rows keyed by their HMACs; (studies, labels) removed."""
    studies = labels = 0
    for part in chunks(study_ids):
        rows = session.execute(
            select(Study.dataset_id, Study.study_key_hmac, Study.accession_hmac).where(Study.id.in_(part))
        ).tuples()
        for dataset_id, study_key, accession in list(rows):
            keys = [k for k in (study_key, accession) if k]
            labels += _rowcount(session.execute(
                delete(StudyLabel).where(StudyLabel.dataset_id == dataset_id, StudyLabel.key_hmac.in_(keys))
            ))  # fmt: skip
        studies += _rowcount(session.execute(delete(Study).where(Study.id.in_(part))))
    return studies, labels


def delete_dataset_labels(session: Session, dataset_id: str) -> int:
    return _rowcount(session.execute(delete(StudyLabel).where(StudyLabel.dataset_id == dataset_id)))


def erased_before(session: Session, project_id: str, kind: str, target: str) -> bool:
    q = select(Erasure.id).where(
        Erasure.project_id == project_id, Erasure.kind == kind, Erasure.target == target
    )
    return session.scalar(q.limit(1)) is not None


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
