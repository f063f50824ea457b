"""Label CSVs: rows keyed by the original AccessionNumber or StudyInstanceUID, stored by HMAC only."""

from __future__ import annotations

import csv
import io

from sqlalchemy.orm import Session

from platform_core.datasets import repository
from platform_core.datasets.models import Dataset
from platform_core.datasets.schemas import LabelImport, RowError
from platform_core.dicom.deid import key_hmac
from platform_core.errors import Invalid

KEY_COLUMNS = ("AccessionNumber", "StudyInstanceUID")
POSITIVE = {"1", "true", "positive", "yes", "pos"}
NEGATIVE = {"0", "false", "negative", "no", "neg"}
SPLITS = {"train", "val", "test"}


def parse_value(text: str) -> int | None:
    v = text.strip().lower()
    if v in POSITIVE:
        return 1
    if v in NEGATIVE:
        return 0
    return None


def import_labels(session: Session, secret: str, dataset: Dataset, data: bytes) -> LabelImport:
    try:
        text = data.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text))
        header = [h.strip() for h in next(reader, [])]
    except (UnicodeDecodeError, csv.Error):
        raise Invalid("the labels file is not a UTF-8 CSV", param="file") from None
    keys = [c for c in header if c in KEY_COLUMNS]
    if len(keys) != 1:
        raise Invalid(
            "the CSV needs exactly one key column: AccessionNumber or StudyInstanceUID", param="file"
        )
    key_col = header.index(keys[0])
    errors: list[RowError] = []
    label_cols: dict[int, str] = {}
    split_col: int | None = None
    for i, name in enumerate(header):
        if i == key_col:
            continue
        if name == "split":
            split_col = i
        elif name in dataset.labels:
            label_cols[i] = name
        else:
            errors.append(RowError(row=1, column=name, message=f"unknown label column '{name}'"))
    rows = imported = 0
    parsed: dict[str, tuple[dict[str, int], str | None]] = {}
    try:
        for n, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            rows += 1
            key = row[key_col].strip() if key_col < len(row) else ""
            if not key:
                errors.append(RowError(row=n, column=header[key_col], message="empty key"))
                continue
            labels: dict[str, int] = {}
            bad = False
            for i, name in label_cols.items():
                cell = row[i].strip() if i < len(row) else ""
                if not cell:
                    continue  # unknown for this study
                value = parse_value(cell)
                if value is None:
                    errors.append(
                        RowError(
                            row=n, column=name, message="bad value: use 0/1, true/false, positive/negative"
                        )
                    )
                    bad = True
                else:
                    labels[name] = value
            split = None
            if split_col is not None and split_col < len(row) and row[split_col].strip():
                split = row[split_col].strip().lower()
                if split not in SPLITS:
                    errors.append(RowError(row=n, column="split", message="split must be train, val or test"))
                    bad = True
            if bad or not labels:
                if not bad:
                    errors.append(RowError(row=n, column=None, message="no label values"))
                continue
            parsed[key_hmac(secret, key)] = (labels, split)
    except csv.Error as exc:
        raise Invalid(f"malformed CSV: {exc.__class__.__name__}", param="file") from None
    if not parsed:
        raise Invalid(
            "no usable label rows"
            + (f"; first error row {errors[0].row}: {errors[0].message}" if errors else ""),
            param="file",
        )
    for hmac_key, (labels, split) in parsed.items():
        repository.upsert_label(session, dataset.id, hmac_key, labels, split)
        imported += 1
    matched = len(repository.matched_keys(session, dataset.id, list(parsed)))
    return LabelImport(
        rows=rows, imported=imported, matched=matched, unmatched=imported - matched, errors=errors
    )
