"""Label CSVs: rows keyed by the original AccessionNumber or StudyInstanceUID, stored by HMAC only; and
the subgroup columns a CSV declares (`group:<name>`), kept per study key HMAC in the object store.

A column headed `group:site` (or `group:scanner`, ...) holds a subgroup value per study; the test metrics
of the dataset's jobs are then reported per value (platform_core.evaluation.subgroups). A group is for
categories such as site or scanner: one with more than MAX_GROUP_VALUES distinct values is refused (it
would more likely be an identifier than a category).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from platform_core.datasets import repository
from platform_core.datasets.models import Dataset
from platform_core.datasets.schemas import LabelImport, RowError
from platform_core.dicom.deid import key_hmac
from platform_core.errors import Invalid
from platform_core.storage import ObjectStore

KEY_COLUMNS = ("AccessionNumber", "StudyInstanceUID")
POSITIVE = {"1", "true", "positive", "yes", "pos"}
NEGATIVE = {"0", "false", "negative", "no", "neg"}
SPLITS = {"train", "val", "test"}
GROUP_PREFIX = "group:"
GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")
MAX_GROUP_VALUES = 50
MAX_GROUP_VALUE_CHARS = 64
GROUPS_FILE = "label_groups.json"


def parse_value(text: str) -> int | None:
    v = text.strip().lower()
    if v in POSITIVE:
        return 1
    if v in NEGATIVE:
        return 0
    return None


@dataclass
class Columns:
    """Where each kind of column sits in the CSV's header."""

    header: list[str]
    key: int
    labels: dict[int, str] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)
    split: int | None = None


@dataclass
class Parsed:
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    labels: dict[str, tuple[dict[str, int], str | None]] = field(default_factory=dict)  # by key HMAC
    groups: dict[str, dict[str, str]] = field(default_factory=dict)  # by key HMAC


def _header(data: bytes) -> tuple[Iterator[list[str]], list[str]]:
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
        return reader, [h.strip() for h in next(reader, [])]
    except (UnicodeDecodeError, csv.Error):
        raise Invalid("the labels file is not a UTF-8 CSV", param="file") from None


def _columns(header: list[str], dataset: Dataset, errors: list[RowError]) -> Columns:
    keys = [c for c in header if c in KEY_COLUMNS]
    if len(keys) != 1:
        raise Invalid(
            "the CSV needs exactly one key column: AccessionNumber or StudyInstanceUID", param="file"
        )
    cols = Columns(header, header.index(keys[0]))
    for i, name in enumerate(header):
        group = name[len(GROUP_PREFIX) :].strip() if name.lower().startswith(GROUP_PREFIX) else None
        if i == cols.key:
            continue
        if name == "split":
            cols.split = i
        elif name in dataset.labels:
            cols.labels[i] = name
        elif group is not None and GROUP_NAME.match(group):
            cols.groups[i] = group
        elif group is not None:
            message = "a group name is a letter, then up to 39 letters, digits, '_' or '-'"
            errors.append(RowError(row=1, column=name, message=message))
        else:
            errors.append(RowError(row=1, column=name, message=f"unknown label column '{name}'"))
    return cols


def _cell(row: list[str], i: int) -> str:
    return row[i].strip() if i < len(row) else ""


def _row_labels(n: int, row: list[str], cols: Columns, errors: list[RowError]) -> dict[str, int] | None:
    """The row's label values (an empty cell is unknown); None when one is not a label value."""
    labels: dict[str, int] = {}
    bad = False
    for i, name in cols.labels.items():
        cell = _cell(row, i)
        if not cell:
            continue
        value = parse_value(cell)
        if value is None:
            message = "bad value: use 0/1, true/false, positive/negative"
            errors.append(RowError(row=n, column=name, message=message))
            bad = True
        else:
            labels[name] = value
    return None if bad else labels


def _row_split(n: int, row: list[str], cols: Columns, errors: list[RowError]) -> tuple[bool, str | None]:
    split = _cell(row, cols.split).lower() if cols.split is not None else ""
    if split and split not in SPLITS:
        errors.append(RowError(row=n, column="split", message="split must be train, val or test"))
        return False, None
    return True, split or None


def _parse(reader: Iterator[list[str]], cols: Columns, secret: str, parsed: Parsed) -> None:
    errors = parsed.errors
    try:
        for n, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            parsed.rows += 1
            key = _cell(row, cols.key)
            if not key:
                errors.append(RowError(row=n, column=cols.header[cols.key], message="empty key"))
                continue
            labels = _row_labels(n, row, cols, errors)
            ok, split = _row_split(n, row, cols, errors)
            if labels is None or not ok:
                continue
            if not labels:
                errors.append(RowError(row=n, column=None, message="no label values"))
                continue
            hmac_key = key_hmac(secret, key)
            parsed.labels[hmac_key] = (labels, split)
            groups = {
                g: _cell(row, i)[:MAX_GROUP_VALUE_CHARS] for i, g in cols.groups.items() if _cell(row, i)
            }
            if groups:
                parsed.groups[hmac_key] = groups
    except csv.Error as exc:
        raise Invalid(f"malformed CSV: {exc.__class__.__name__}", param="file") from None


def _check_groups(parsed: Parsed, cols: Columns) -> None:
    """A group with too many distinct values is dropped with an error naming it."""
    for name in cols.groups.values():
        values = {g[name] for g in parsed.groups.values() if name in g}
        if len(values) > MAX_GROUP_VALUES:
            message = (
                f"group '{name}' has {len(values)} distinct values; a group has at most {MAX_GROUP_VALUES}"
            )
            parsed.errors.append(RowError(row=1, column=GROUP_PREFIX + name, message=message))
            for g in parsed.groups.values():
                g.pop(name, None)
    parsed.groups = {k: g for k, g in parsed.groups.items() if g}


def groups_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/{GROUPS_FILE}"


def read_groups(store: ObjectStore, dataset_id: str) -> dict[str, dict[str, str]]:
    """{study key HMAC: {group: value}} from every labels import of the dataset so far."""
    key = groups_key(dataset_id)
    if not store.exists(key):
        return {}
    found: dict[str, dict[str, str]] = json.loads(store.get_bytes(key))["groups"]
    return found


def _store_groups(store: ObjectStore, dataset_id: str, groups: dict[str, dict[str, str]]) -> None:
    merged = read_groups(store, dataset_id)
    for k, g in groups.items():
        merged[k] = {**merged.get(k, {}), **g}
    write_groups(store, dataset_id, merged)


def write_groups(store: ObjectStore, dataset_id: str, groups: dict[str, dict[str, str]]) -> None:
    """The dataset's whole label-groups file (erasure rewrites it without an erased study's keys)."""
    doc = {"format": "medtune-label-groups/1", "groups": groups}
    store.put_bytes(groups_key(dataset_id), json.dumps(doc, sort_keys=True).encode(), "application/json")


def import_labels(
    session: Session, secret: str, dataset: Dataset, data: bytes, store: ObjectStore | None = None
) -> LabelImport:
    """Upsert the CSV's label rows; `group:<name>` columns go to the object store (`store`; without one,
    as on the PACS import, they are reported as errors and ignored)."""
    parsed = Parsed()
    reader, header = _header(data)
    cols = _columns(header, dataset, parsed.errors)
    if cols.groups and store is None:
        for i in cols.groups:
            message = "group columns are read by the REST labels import (POST /v1/datasets/{id}/labels)"
            parsed.errors.append(RowError(row=1, column=header[i], message=message))
        cols.groups = {}
    _parse(reader, cols, secret, parsed)
    errors = parsed.errors
    if not parsed.labels:
        first = f"; first error row {errors[0].row}: {errors[0].message}" if errors else ""
        raise Invalid("no usable label rows" + first, param="file")
    _check_groups(parsed, cols)
    for hmac_key, (labels, split) in parsed.labels.items():
        repository.upsert_label(session, dataset.id, hmac_key, labels, split)
    if parsed.groups and store is not None:
        _store_groups(store, dataset.id, parsed.groups)
    imported = len(parsed.labels)
    matched = len(repository.matched_keys(session, dataset.id, list(parsed.labels)))
    return LabelImport(
        rows=parsed.rows, imported=imported, matched=matched, unmatched=imported - matched, errors=errors
    )
