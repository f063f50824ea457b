"""Leakage and sanity checks of a split, run when it is made and again when a job starts.

A split is refused (platform_core.errors.Invalid, HTTP 422) when:
- a pseudonymous patient has images in two splits (the patients are named);
- identical pixel content (pixel cache hash) sits in two splits (the images are named);
- train, val or test would hold no image;
- a label has no positive patient in train, val or test.
The message lists every shortfall with its counts and says what to change.

For the training engineer, when a job starts::

    from platform_core.splits.checks import verify
    split = verify(session, split_id)   # raises Invalid (422) or NotFound (404)
    split.rows          # list[ImageRow] of the dataset version, sorted by image id
    split.assignment    # {image_id: "train" | "val" | "test"}
    split.record        # the Split row (seed, fractions, sha256, dataset_version_id, ...)

`verify` re-reads the version's frozen rows and the stored assignment, re-runs every check and
confirms that the manifest still hashes to the recorded sha256 (so the job trains on exactly the
data the split was made from). Pass project_id to scope the lookup to the caller's project.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from platform_core.errors import Invalid
from platform_core.splits.algorithm import SPLITS, Fractions, ImageRow, label_names

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from platform_core.splits.models import Split

SHOWN = 5


def count(rows: Sequence[ImageRow], assignment: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per split: patients, studies, images, and per label positive/negative images and positive patients."""
    labels = label_names(rows)
    patients: dict[str, set[str]] = {s: set() for s in SPLITS}
    studies: dict[str, set[str]] = {s: set() for s in SPLITS}
    images = dict.fromkeys(SPLITS, 0)
    tally = {s: {name: [0, 0] for name in labels} for s in SPLITS}
    positive_patients: dict[str, dict[str, set[str]]] = {s: {name: set() for name in labels} for s in SPLITS}
    for r in rows:
        split = assignment.get(r.image_id)
        if split not in images:
            continue
        patients[split].add(r.patient_pseudonym)
        studies[split].add(r.study_pseudonym)
        images[split] += 1
        for name, value in r.labels.items():
            if value == 1:
                tally[split][name][0] += 1
                positive_patients[split][name].add(r.patient_pseudonym)
            elif value == 0:
                tally[split][name][1] += 1
    return {
        s: {
            "patients": len(patients[s]),
            "studies": len(studies[s]),
            "images": images[s],
            "labels": {
                name: {
                    "positive": tally[s][name][0],
                    "negative": tally[s][name][1],
                    "positive_patients": len(positive_patients[s][name]),
                }
                for name in labels
            },
        }
        for s in SPLITS
    }


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def patient_leaks(rows: Sequence[ImageRow], assignment: Mapping[str, str]) -> list[str]:
    per_patient: dict[str, dict[str, int]] = {}
    for r in rows:
        splits = per_patient.setdefault(r.patient_pseudonym, {})
        splits[assignment[r.image_id]] = splits.get(assignment[r.image_id], 0) + 1
    leaks = []
    for patient, splits in sorted(per_patient.items()):
        if len(splits) > 1:
            where = " and ".join(f"{s} ({splits[s]} image(s))" for s in SPLITS if s in splits)
            leaks.append(f"patient {patient} has images in {where}")
    return leaks


def pixel_leaks(rows: Sequence[ImageRow], assignment: Mapping[str, str]) -> list[str]:
    by_hash: dict[str, list[ImageRow]] = {}
    for r in rows:
        if r.pixel_sha256:
            by_hash.setdefault(r.pixel_sha256, []).append(r)
    leaks = []
    for digest, same in sorted(by_hash.items()):
        splits = {assignment[r.image_id] for r in same}
        if len(splits) > 1:
            images = ", ".join(
                f"{r.image_id} ({assignment[r.image_id]}, patient {r.patient_pseudonym})"
                for r in sorted(same, key=lambda r: r.image_id)[:SHOWN]
            )
            leaks.append(f"identical pixels (sha256 {digest[:12]}...) in {images}")
    return leaks


def problems(
    rows: Sequence[ImageRow], assignment: Mapping[str, str], fractions: Fractions | None = None
) -> list[str]:
    """Every reason to refuse this split, each with its counts and what to change; [] when sound."""
    unassigned = [r.image_id for r in rows if assignment.get(r.image_id) not in SPLITS]
    if unassigned:
        return [f"{len(unassigned)} image(s) have no split: {_listed(sorted(unassigned))}"]
    counts = count(rows, assignment)
    return [
        *_leaks(rows, assignment),
        *_empty_splits(rows, counts, fractions),
        *_label_shortfalls(rows, counts, fractions),
    ]


def _leaks(rows: Sequence[ImageRow], assignment: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    leaks = patient_leaks(rows, assignment)
    if leaks:
        out.append(
            f"{len(leaks)} patient(s) straddle splits, so the model would be tested on patients it "
            f"trained on: {_listed(leaks)}; put all of a patient's studies in one split"
        )
    dupes = pixel_leaks(rows, assignment)
    if dupes:
        out.append(
            f"{len(dupes)} pixel-identical image set(s) straddle splits: {_listed(dupes)}; "
            "put the duplicates in one split or remove them"
        )
    return out


def _expected(fractions: Fractions | None, split: str, n: int) -> str:
    """What a seeded split's fraction would give the split out of n ("" for an uploaded column)."""
    if fractions is None:
        return ""
    f = dict(zip(SPLITS, fractions.as_tuple(), strict=True))[split]
    return f"; at {split} fraction {float(f):g} its share of {n} is {float(f * n):.2f}"


def _empty_splits(
    rows: Sequence[ImageRow], counts: dict[str, dict[str, Any]], fractions: Fractions | None
) -> list[str]:
    total_patients = len({r.patient_pseudonym for r in rows})
    remedy = (
        "add patients or raise fractions.{split}"
        if fractions is not None
        else "mark some patients' studies '{split}' in the split column"
    )
    return [
        f"{split} would hold 0 images (dataset version: {total_patients} patient(s), "
        f"{len(rows)} image(s){_expected(fractions, split, total_patients)}); {remedy.format(split=split)}"
        for split in SPLITS
        if counts[split]["images"] == 0
    ]


def _label_shortfalls(
    rows: Sequence[ImageRow], counts: dict[str, dict[str, Any]], fractions: Fractions | None
) -> list[str]:
    """A label without a positive patient in a split that holds images."""
    remedy = (
        "raise fractions.{split}" if fractions is not None else "mark some of its positive patients '{split}'"
    )
    positive_totals: dict[str, set[str]] = {}
    for r in rows:
        for name, value in r.labels.items():
            if value == 1:
                positive_totals.setdefault(name, set()).add(r.patient_pseudonym)
    out: list[str] = []
    for name in label_names(rows):
        positives = {s: counts[s]["labels"][name]["positive_patients"] for s in SPLITS}
        total = len(positive_totals.get(name, ()))
        short = [s for s in SPLITS if positives[s] == 0 and counts[s]["images"] > 0]
        for split in short:
            per_split = ", ".join(f"{s} {positives[s]}" for s in SPLITS)
            out.append(
                f"label '{name}' has no positive patient in {split} (positive patients: {per_split}; "
                f"{total} in all{_expected(fractions, split, total)}); add studies positive for '{name}', "
                f"{remedy.format(split=split)}, or drop the label"
            )
    return out


def check(
    rows: Sequence[ImageRow], assignment: Mapping[str, str], fractions: Fractions | None = None
) -> None:
    found = problems(rows, assignment, fractions)
    if found:
        raise Invalid("split refused: " + "; ".join(found), param="split")


@dataclass(frozen=True)
class VerifiedSplit:
    record: Split
    rows: list[ImageRow]
    assignment: dict[str, str]


def verify(session: Session, split_id: str, project_id: str | None = None) -> VerifiedSplit:
    """Re-check a stored split before training on it; see the module docstring."""
    from platform_core.splits import manifest, repository

    record = repository.get_split(session, split_id, project_id)
    rows = repository.version_rows(session, record.dataset_version_id)
    assignment = repository.assignment(session, record.id)
    fractions = Fractions.parse(*record.fractions_text()) if record.source == "seeded" else None
    check(rows, assignment, fractions)
    digest = manifest.sha256(manifest.render(rows, assignment))
    if digest != record.sha256:
        raise Invalid(
            f"split {record.id}: its manifest hashes to {digest}, not the recorded {record.sha256}; "
            "the stored assignment changed since it was made: make a new split",
            param="split_id",
        )
    return VerifiedSplit(record=record, rows=rows, assignment=assignment)
