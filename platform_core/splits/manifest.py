"""The split manifest: canonical CSV bytes (one line per image) and their sha256.

Canonical means byte-identical for the same rows and assignment wherever it is written: UTF-8,
"\n" line ends, rows sorted by image id, label columns sorted by name after the four fixed
columns, label cells "1", "0" or "" (unknown), minimal quoting.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence

from platform_core.splits.algorithm import ImageRow, label_names

FIXED_COLUMNS = ("image_id", "study_pseudonym", "patient_pseudonym", "split")
CONTENT_TYPE = "text/csv; charset=utf-8"


def _cell(value: int | None) -> str:
    return "" if value is None else str(int(value))


def render(rows: Sequence[ImageRow], assignment: Mapping[str, str]) -> bytes:
    labels = label_names(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([*FIXED_COLUMNS, *labels])
    for row in sorted(rows, key=lambda r: r.image_id):
        writer.writerow(
            [
                row.image_id,
                row.study_pseudonym,
                row.patient_pseudonym,
                assignment[row.image_id],
                *(_cell(row.labels.get(name)) for name in labels),
            ]
        )
    return buf.getvalue().encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse(data: bytes) -> tuple[list[ImageRow], dict[str, str]]:
    """Manifest bytes -> rows and assignment (for consumers such as training, and for tests)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader)
    labels = header[len(FIXED_COLUMNS) :]
    rows: list[ImageRow] = []
    assignment: dict[str, str] = {}
    for record in reader:
        image_id, study, patient, split, *cells = record
        rows.append(
            ImageRow(
                image_id=image_id,
                study_pseudonym=study,
                patient_pseudonym=patient,
                labels={name: (int(c) if c != "" else None) for name, c in zip(labels, cells, strict=True)},
            )
        )
        assignment[image_id] = split
    return rows, assignment
