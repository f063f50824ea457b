"""The de-identification report of a dataset: what was done, summed over its uploads, and never a value.

An upload tallies its files' counts (platform_core.dicom.deid.Result.counts and .kept) and adds them
to the dataset's rows in one additive upsert when it finishes; the report reads those rows, the
dataset's options and its rejections by reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from platform_core.datasets import repository
from platform_core.datasets.models import Dataset, DeidCount
from platform_core.datasets.schemas import DatasetOptions
from platform_core.dicom.deid import ACTIONS, CODES, Options, Result

PROFILE = "DICOM PS3.15 E.1-1 Basic Application Level Confidentiality Profile, at every depth"
ALLOWLIST = "platform_core/dicom/data/deid-allowlist.json"


@dataclass
class Tally:
    """One upload's counts, added to the dataset's when it finishes."""

    actions: Counter[str] = field(default_factory=Counter)
    kept: Counter[tuple[str, str]] = field(default_factory=Counter)  # (keyword, option) -> files

    def add(self, result: Result) -> None:
        self.actions.update(result.counts)
        self.actions["files"] += 1
        self.kept.update(result.kept.items())

    def flush(self, session: Session, dataset_id: str) -> None:
        rows = [
            {"kind": "action", "name": a, "option": None, "count": n} for a, n in self.actions.items() if n
        ]
        rows += [{"kind": "kept", "name": k, "option": o, "count": n} for (k, o), n in self.kept.items()]
        if rows:
            add_counts(session, dataset_id, rows)
        self.actions.clear()
        self.kept.clear()


def add_counts(session: Session, dataset_id: str, rows: list[dict[str, Any]]) -> None:
    """count = count + n, inserting the rows that are new: one statement, safe under concurrent uploads.
    Rows go in key order, so two uploads of one dataset lock them in the same order (no deadlock)."""
    table: Table = DeidCount.__table__  # type: ignore[assignment]
    values = sorted(({"dataset_id": dataset_id, **r} for r in rows), key=lambda r: (r["kind"], r["name"]))
    stmt = (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(table).values(
        values
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["dataset_id", "kind", "name"], set_={"count": table.c.count + stmt.excluded.count}
    )
    session.execute(stmt)


class MethodCode(BaseModel):
    option: str
    code: str  # CID 7050, as written in DeidentificationMethodCodeSequence
    meaning: str


class KeptAttribute(BaseModel):
    attribute: str  # the keyword (or a private attribute's group, creator and element)
    option: str  # the option that kept it
    files: int


class DeidReport(BaseModel):
    object: Literal["deid_report"] = "deid_report"
    dataset_id: str
    profile: str
    allowlist: str
    methods: list[MethodCode]
    files: int  # DICOM files de-identified and stored
    actions: dict[str, int]  # removed | emptied | replaced | pseudonymised | shifted -> attributes
    kept: list[KeptAttribute]  # beyond the profile, by an option
    rejected: dict[str, int]  # reason -> files


def deid_options(opts: DatasetOptions) -> Options:
    """The de-identifier's options from a dataset's."""
    return Options(
        opts.dates, opts.retain_patient_characteristics, opts.retain_device_identity,
        opts.retain_institution_identity, opts.retain_safe_private,
    )  # fmt: skip


def build(session: Session, dataset: Dataset) -> DeidReport:
    rows = session.scalars(select(DeidCount).where(DeidCount.dataset_id == dataset.id)).all()
    actions = {r.name: int(r.count) for r in rows if r.kind == "action"}
    kept = [
        KeptAttribute(attribute=r.name, option=r.option or "", files=int(r.count))
        for r in rows
        if r.kind == "kept"
    ]
    rejected: Counter[str] = Counter()
    for status, reason, n in repository.status_counts(session, dataset.id):
        if status == "rejected":
            rejected[reason or "unknown"] += n
    on = deid_options(DatasetOptions.model_validate(dataset.options)).enabled()
    methods = [MethodCode(option=o, code=CODES[o][0], meaning=CODES[o][1]) for o in ["basic", *on]]
    return DeidReport(
        dataset_id=dataset.id, profile=PROFILE, allowlist=ALLOWLIST, methods=methods,
        files=actions.pop("files", 0), actions={a: actions.get(a, 0) for a in ACTIONS},
        kept=sorted(kept, key=lambda k: (k.option, k.attribute)), rejected=dict(sorted(rejected.items())),
    )  # fmt: skip
