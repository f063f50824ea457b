"""Dataset versions and splits as the API shows them: a split with its counts, a version, their pages, and
a split's manifest with the headers that name and check it."""

from __future__ import annotations

from fractions import Fraction

from sqlalchemy.orm import Session

from platform_core.pagination import Page
from platform_core.splits import service
from platform_core.splits.algorithm import SPLITS
from platform_core.splits.models import DatasetVersion, Split
from platform_core.splits.schemas import SplitCounts, SplitOut, VersionOut


def split_out(split: Split) -> SplitOut:
    fractions = None
    if split.fractions is not None:
        fractions = {k: float(Fraction(v)) for k, v in split.fractions.items()}
    return SplitOut(
        id=split.id,
        dataset_id=split.dataset_id,
        dataset_version=split.dataset_version_id,
        source="column" if split.source == "column" else "seeded",
        seed=split.seed,
        seed_drawn=split.seed_drawn,
        fractions=fractions,
        algorithm=split.algorithm,
        sha256=split.sha256,
        # JSONB does not keep key order: give train, val, test and labels by name.
        counts={
            k: SplitCounts.model_validate(
                {**split.counts[k], "labels": dict(sorted(split.counts[k]["labels"].items()))}
            )
            for k in SPLITS
            if k in split.counts
        },
        erased_members=split.erased_members,
        created_at=split.created_at,
    )


def version_out(v: DatasetVersion) -> VersionOut:
    return VersionOut(
        id=v.id,
        dataset_id=v.dataset_id,
        number=v.number,
        content_sha256=v.content_sha256,
        task=v.task,
        labels=[str(n) for n in v.label_names],
        images=v.image_count,
        studies=v.study_count,
        patients=v.patient_count,
        erased_members=v.erased_members,
        created_at=v.created_at,
    )


def get_split(session: Session, project_id: str, dataset_id: str, split_id: str) -> SplitOut:
    return split_out(service.get_split(session, project_id, dataset_id, split_id))


def get_version(session: Session, project_id: str, dataset_id: str, version_id: str) -> VersionOut:
    return version_out(service.get_version(session, project_id, dataset_id, version_id))


def list_splits(
    session: Session, project_id: str, dataset_id: str, limit: int, after: str | None
) -> Page[SplitOut]:
    """Newest first; `after` pages towards older splits."""
    splits = service.list_splits(session, project_id, dataset_id, limit + 1, after)
    return Page.build(splits, limit, split_out)


def list_versions(
    session: Session, project_id: str, dataset_id: str, limit: int, after: str | None
) -> Page[VersionOut]:
    """Newest first; `after` pages towards older versions."""
    versions = service.list_versions(session, project_id, dataset_id, limit + 1, after)
    return Page.build(versions, limit, version_out)


def manifest_download(
    session: Session, project_id: str, dataset_id: str, split_id: str
) -> tuple[bytes, dict[str, str]]:
    """The manifest CSV and its headers: its sha256 as made, and how many members erasure removed since
    (more than 0: served without them, so the bytes no longer hash to it)."""
    data, split = service.manifest_bytes(session, project_id, dataset_id, split_id)
    return data, {
        "ETag": f'"{split.sha256}"',
        "X-Manifest-SHA256": split.sha256,
        "X-Erased-Members": str(split.erased_members),
        "Content-Disposition": f'attachment; filename="{split.id}.csv"',
    }
