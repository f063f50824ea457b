"""The labels CSV's `group:<name>` columns: read per study key HMAC beside the labels, a bad group name
or a group with too many values (an identifier more likely than a category) refused with a row-1 error,
and stored merged across imports in the object store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from platform_core.datasets import labels as L
from platform_core.dicom.deid import key_hmac
from platform_core.storage import open_store

SECRET = "label-groups-secret-0123456789abcdef"


def _parse(text: str) -> tuple[L.Parsed, L.Columns]:
    dataset: Any = SimpleNamespace(labels=["finding"])
    parsed = L.Parsed()
    reader, header = L._header(text.encode())
    cols = L._columns(header, dataset, parsed.errors)
    L._parse(reader, cols, SECRET, parsed)
    L._check_groups(parsed, cols)
    return parsed, cols


def test_group_columns_are_read_per_study_and_bad_names_reported() -> None:
    parsed, cols = _parse(
        "AccessionNumber,finding,group:site,group:9bad,split\nA1,1,north,x,train\nA2,0,,y,\nA3,,south,z,\n"
    )
    assert list(cols.groups.values()) == ["site"]
    assert parsed.groups == {key_hmac(SECRET, "A1"): {"site": "north"}}  # A2: no site; A3: no label values
    assert set(parsed.labels) == {key_hmac(SECRET, "A1"), key_hmac(SECRET, "A2")}
    assert [(e.row, e.column) for e in parsed.errors] == [(1, "group:9bad"), (4, None)]


def test_a_group_with_too_many_values_is_dropped() -> None:
    rows = "".join(f"A{i},1,value{i},{i % 2}\n" for i in range(L.MAX_GROUP_VALUES + 1))
    parsed, _ = _parse("AccessionNumber,finding,group:patient,group:site\n" + rows)
    assert {tuple(g) for g in parsed.groups.values()} == {("site",)}
    assert parsed.errors[0].column == "group:patient" and "51 distinct values" in parsed.errors[0].message


def test_groups_merge_across_imports_in_the_store(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    assert L.read_groups(store, "ds_1") == {}
    L._store_groups(store, "ds_1", {"k1": {"site": "north"}})
    L._store_groups(store, "ds_1", {"k1": {"scanner": "a"}, "k2": {"site": "south"}})
    assert L.read_groups(store, "ds_1") == {"k1": {"site": "north", "scanner": "a"}, "k2": {"site": "south"}}
