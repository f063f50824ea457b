"""The de-identification rules as data: Table E.1-1 with its option columns, the allowlist, safe private tags.

Nothing here touches a Dataset's values: it answers, for a tag, what the profile does with it, which
enabled option keeps it, and whether the allowlist keeps an attribute the table does not list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydicom.datadict import tag_for_keyword

DATA = Path(__file__).parent / "data"
TABLE_PATH = DATA / "ps3.15-table-e1-1-confidentiality-profile-2024b.json"
ALLOWLIST_PATH = DATA / "deid-allowlist.json"
SAFE_PRIVATE_PATH = DATA / "deid-safe-private.json"

# Option names as the dataset options spell them; dates options carry their value.
PATIENT_CHARS = "retain_patient_characteristics"
DEVICE = "retain_device_identity"
INSTITUTION = "retain_institution_identity"
SAFE_PRIVATE = "retain_safe_private"
FULL_DATES = "dates=keep"
MODIFIED_DATES = "dates=shift"

# The table's option columns whose "K" keeps the attribute when that option is on.
KEEP_COLUMNS = {
    "rtnPatCharsOpt": PATIENT_CHARS,
    "rtnDevIdOpt": DEVICE,
    "rtnInstIdOpt": INSTITUTION,
    "rtnLongFullDatesOpt": FULL_DATES,
}

# DeidentificationMethodCodeSequence codes (CID 7050) for the profile and each option.
CODES: dict[str, tuple[str, str]] = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    FULL_DATES: ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    MODIFIED_DATES: ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    PATIENT_CHARS: ("113108", "Retain Patient Characteristics Option"),
    DEVICE: ("113109", "Retain Device Identity Option"),
    SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    INSTITUTION: ("113112", "Retain Institution Identity Option"),
}

# Free-text value representations: kept only where the allowlist names the attribute, and then only
# when the value reads as a code.
TEXT_VRS = frozenset({"SH", "LO", "LT", "ST", "UT", "UC", "PN", "UR", "AE"})
CS_VALUE = re.compile(r"[A-Z0-9 _]{0,16}")
CODE_VALUE = re.compile(r"[A-Za-z0-9._:\-]{0,64}")


@dataclass(frozen=True)
class Profile:
    """The table as lookups: exact tags, and the repeating-group masks (50xx,xxxx), (60xx,3000)..."""

    actions: dict[int, str]
    masks: list[tuple[int, int, str]]  # (mask, value, action)
    modified_dates: frozenset[int]  # rtnLongModifDatesOpt == C: shift instead of the basic action
    keeps: dict[int, frozenset[str]]  # tag -> the options whose column says K
    patient_chars: frozenset[int]

    def action(self, tag: int) -> str | None:
        found = self.actions.get(tag)
        if found is not None:
            return found
        for mask, value, act in self.masks:
            if tag & mask == value:
                return act
        return None


def _resolve(action: str) -> str:
    # Compound actions allow the choice by IOD type; keep the element (dummy or empty) rather than
    # drop it, so type 1/2 attributes stay present. U* means: keep the sequence, replace its UIDs.
    if action == "X/Z/U*":
        return "U*"
    if "D" in action:
        return "D"
    if "Z" in action:
        return "Z"
    return action


@lru_cache
def load_profile(path: Path = TABLE_PATH) -> Profile:
    rows: list[dict[str, str]] = json.loads(path.read_text())
    actions: dict[int, str] = {}
    masks: list[tuple[int, int, str]] = []
    dates: set[int] = set()
    keeps: dict[int, frozenset[str]] = {}
    for row in rows:
        ident = row["id"].lower()
        action = _resolve(row["basicProfile"])
        if len(ident) != 8 or not all(c in "0123456789abcdefx" for c in ident):
            continue  # the private-attributes row: private tags are handled on their own
        if "x" in ident:
            mask = int("".join("0" if c == "x" else "f" for c in ident), 16)
            masks.append((mask, int(ident.replace("x", "0"), 16), action))
            continue
        tag = int(ident, 16)
        actions[tag] = action
        if row.get("rtnLongModifDatesOpt") == "C":
            dates.add(tag)
        options = frozenset(opt for col, opt in KEEP_COLUMNS.items() if row.get(col) == "K")
        if options:
            keeps[tag] = options
    chars = frozenset(t for t, o in keeps.items() if PATIENT_CHARS in o)
    return Profile(actions, masks, frozenset(dates), keeps, chars)


@dataclass(frozen=True)
class Allowlist:
    """Attributes outside the table kept at any depth, and those an option keeps (tag -> option)."""

    tags: frozenset[int]
    by_option: dict[int, str]

    def value_ok(self, vr: str, value: object) -> bool:
        """Kept text must read as a code: the CS repertoire, or a code value's characters."""
        if vr not in TEXT_VRS and vr != "CS":
            return True
        values = [value] if isinstance(value, str | bytes) or not isinstance(value, Iterable) else value
        pattern = CS_VALUE if vr == "CS" else CODE_VALUE
        return all(v is None or pattern.fullmatch(str(v).strip()) is not None for v in values)


def _tags(keywords: list[str]) -> set[int]:
    tags = set()
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"unknown DICOM keyword in the de-identification allowlist: {keyword}")
        tags.add(int(tag))
    return tags


@lru_cache
def load_allowlist(path: Path = ALLOWLIST_PATH) -> Allowlist:
    data = json.loads(path.read_text())
    tags: set[int] = set()
    for keywords in data["keep"].values():
        tags |= _tags(keywords)
    by_option = {tag: option for option, keywords in data["options"].items() for tag in _tags(keywords)}
    return Allowlist(frozenset(tags), by_option)


@lru_cache
def load_safe_private(path: Path = SAFE_PRIVATE_PATH) -> frozenset[tuple[int, str, int]]:
    """(group, private creator, element byte) of private attributes known to hold no identifier."""
    rows = json.loads(path.read_text())["safe"]
    return frozenset((int(r["group"], 16), str(r["creator"]), int(r["element"], 16)) for r in rows)
