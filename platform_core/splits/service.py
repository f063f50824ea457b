"""Freeze dataset versions and make, read and export splits of them.

A dataset version is made on demand (when a split is asked for without naming one): the accepted,
labelled images and their labels as they are now, identified by a content hash, so asking twice
without new uploads or labels returns the same version. A split is either seeded (algorithm.assign
with a seed, drawn and recorded when missing) or taken from the labels CSV's `split` column; both
pass checks.check before they are stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from platform_core.datasets import repository as datasets
from platform_core.datasets.models import Dataset
from platform_core.errors import Invalid, NotFound, PlatformError
from platform_core.ids import new_id
from platform_core.splits import checks, manifest, repository
from platform_core.splits.algorithm import ALGORITHM, SPLITS, Fractions, ImageRow, assign, from_column
from platform_core.splits.models import DatasetVersion, Split

DRAWN_SEED_BITS = 31  # drawn seeds stay small enough to read out and type back
USER_COLUMN = "split"


def get_dataset(session: Session, project_id: str, dataset_id: str) -> Dataset:
    dataset = datasets.get_dataset(session, project_id, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id}")
    return dataset


def content_digest(task: str, label_names: Sequence[str], rows: Sequence[ImageRow]) -> str:
    """sha256 of a version's content: canonical JSON lines, rows by image id, keys sorted."""
    h = hashlib.sha256()
    h.update(json.dumps({"task": task, "labels": sorted(label_names)}, sort_keys=True).encode())
    for r in sorted(rows, key=lambda r: r.image_id):
        line = [r.image_id, r.study_pseudonym, r.patient_pseudonym, r.pixel_sha256,
                dict(sorted(r.labels.items())), r.user_split]  # fmt: skip
        h.update(b"\n" + json.dumps(line, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def freeze_version(session: Session, project_id: str, dataset_id: str) -> DatasetVersion:
    """The version matching the dataset's current content: found by content hash, or made now."""
    dataset = get_dataset(session, project_id, dataset_id)
    names = sorted(str(n) for n in dataset.labels)
    rows = repository.live_rows(session, dataset.id, names)
    if not rows:
        raise Invalid(
            f"dataset {dataset.id} has no accepted image with labels yet: upload studies and a labels CSV "
            "whose AccessionNumber or StudyInstanceUID keys match them",
            param="dataset_id",
        )
    digest = content_digest(dataset.task, names, rows)
    found = repository.version_by_hash(session, dataset.id, digest)
    if found is not None:
        return found
    version = DatasetVersion(
        id=new_id("dsv"),
        project_id=project_id,
        dataset_id=dataset.id,
        number=repository.next_version_number(session, dataset.id),
        content_sha256=digest,
        task=dataset.task,
        label_names=names,
        image_count=len(rows),
        study_count=len({r.study_pseudonym for r in rows}),
        patient_count=len({r.patient_pseudonym for r in rows}),
    )
    try:
        with session.begin_nested():
            session.add(version)
            session.flush()
    except IntegrityError:
        # A concurrent request froze the same content first; that version is this one.
        session.expunge(version) if version in session else None
        found = repository.version_by_hash(session, dataset.id, digest)
        if found is None:
            raise
        return found
    repository.insert_version_rows(session, version.id, rows)
    session.flush()
    return version


def create_split(
    session: Session,
    project_id: str,
    dataset_id: str,
    *,
    seed: int | None = None,
    fractions: dict[str, float | str] | None = None,
    column: str | None = None,
    dataset_version_id: str | None = None,
) -> Split:
    """Make, check and store a split; Invalid (422) with every shortfall when it would not be sound."""
    if column is not None:
        if column != USER_COLUMN:
            raise Invalid(
                f"column: only '{USER_COLUMN}' (the labels CSV's split column) is supported", param="column"
            )
        if seed is not None or fractions is not None:
            raise Invalid("give either column or seed/fractions, not both", param="column")
    get_dataset(session, project_id, dataset_id)
    if dataset_version_id is not None:
        version = repository.get_version(session, project_id, dataset_id, dataset_version_id)
    else:
        version = freeze_version(session, project_id, dataset_id)
    rows = repository.version_rows(session, version.id)

    exact: Fractions | None = None
    seed_drawn = False
    if column is not None:
        assignment = from_column(rows)
    else:
        exact = Fractions.parse(*[fractions.get(s) for s in SPLITS]) if fractions else Fractions.parse()
        if seed is None:
            seed, seed_drawn = secrets.randbits(DRAWN_SEED_BITS), True
        assignment = assign(rows, seed, exact)
    checks.check(rows, assignment, exact)

    split = Split(
        id=new_id("spl"),
        project_id=project_id,
        dataset_id=dataset_id,
        dataset_version_id=version.id,
        source="column" if column is not None else "seeded",
        seed=seed,
        seed_drawn=seed_drawn,
        fractions=None
        if exact is None
        else {s: str(f) for s, f in zip(SPLITS, exact.as_tuple(), strict=True)},
        algorithm=ALGORITHM if column is None else f"column:{USER_COLUMN}",
        sha256=manifest.sha256(manifest.render(rows, assignment)),
        counts=checks.count(rows, assignment),
    )
    session.add(split)
    session.flush()
    repository.insert_assignment(session, split.id, assignment)
    session.flush()
    return split


def get_split(session: Session, project_id: str, dataset_id: str, split_id: str) -> Split:
    get_dataset(session, project_id, dataset_id)
    return repository.get_split(session, split_id, project_id, dataset_id)


def list_splits(
    session: Session, project_id: str, dataset_id: str, limit: int, after: str | None
) -> Sequence[Split]:
    get_dataset(session, project_id, dataset_id)
    return repository.list_splits(session, dataset_id, limit, after)


def manifest_bytes(session: Session, project_id: str, dataset_id: str, split_id: str) -> tuple[bytes, Split]:
    """The canonical manifest CSV, re-rendered from the frozen rows and checked against its sha256."""
    split = get_split(session, project_id, dataset_id, split_id)
    data = manifest.render(
        repository.version_rows(session, split.dataset_version_id), repository.assignment(session, split.id)
    )
    # A manifest that lost members to an erasure is served without them; its sha256 stays the original's.
    if manifest.sha256(data) != split.sha256 and not split.erased_members:
        raise PlatformError(f"the manifest of split {split.id} no longer matches its recorded sha256")
    return data, split


def get_version(session: Session, project_id: str, dataset_id: str, version_id: str) -> DatasetVersion:
    get_dataset(session, project_id, dataset_id)
    return repository.get_version(session, project_id, dataset_id, version_id)


def list_versions(
    session: Session, project_id: str, dataset_id: str, limit: int, after: str | None
) -> Sequence[DatasetVersion]:
    get_dataset(session, project_id, dataset_id)
    return repository.list_versions(session, dataset_id, limit, after)
