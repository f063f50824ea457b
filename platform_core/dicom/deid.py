"""De-identification in memory per DICOM PS3.15 Annex E Table E.1-1, driven by the standard's table as data.

The Basic Application Level Confidentiality Profile, plus the options a dataset asks for: dates shifted
per patient (Retain Longitudinal Temporal Information with Modified Dates) and, optionally, Retain
Patient Characteristics. Pseudonyms and UIDs are HMAC-SHA256 of the original value under the
deployment secret, so the same patient or UID maps to the same value in every file and upload.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

TABLE_PATH = Path(__file__).parent / "data" / "ps3.15-table-e1-1-confidentiality-profile-2024b.json"

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
SOP_INSTANCE_UID = 0x00080018

# DeidentificationMethodCodeSequence codes (CID 7050) for the profile and the options applied.
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_PATIENT_CHARS = ("113108", "Retain Patient Characteristics Option")

DUMMY = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "PN": "ANONYMOUS",
    "DS": "0",
    "IS": "0",
    "AS": "000Y",
    "CS": "ANONYMOUS",
    "SH": "ANONYMOUS",
    "LO": "ANONYMOUS",
    "LT": "ANONYMOUS",
    "ST": "ANONYMOUS",
    "UT": "ANONYMOUS",
    "UC": "ANONYMOUS",
    "AE": "ANONYMOUS",
}
NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}


@dataclass(frozen=True)
class Profile:
    """The table as lookups: exact tags, and the repeating-group masks (50xx,xxxx), (60xx,3000)..."""

    actions: dict[int, str]
    masks: list[tuple[int, int, str]]  # (mask, value, action)
    modified_dates: frozenset[int]  # rtnLongModifDatesOpt == C: shift instead of the basic action
    patient_chars: frozenset[int]  # rtnPatCharsOpt == K


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
    chars: set[int] = set()
    for row in rows:
        ident = row["id"].lower()
        action = _resolve(row["basicProfile"])
        if len(ident) != 8 or not all(c in "0123456789abcdefx" for c in ident):
            continue  # the private-attributes row: handled by removing every odd group
        if "x" in ident:
            mask = int("".join("0" if c == "x" else "f" for c in ident), 16)
            value = int(ident.replace("x", "0"), 16)
            masks.append((mask, value, action))
            continue
        tag = int(ident, 16)
        actions[tag] = action
        if row.get("rtnLongModifDatesOpt") == "C":
            dates.add(tag)
        if row.get("rtnPatCharsOpt") == "K":
            chars.add(tag)
    return Profile(actions, masks, frozenset(dates), frozenset(chars))


def _hmac(secret: str, purpose: str, value: str) -> bytes:
    return hmac.new(secret.encode(), f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def key_hmac(secret: str, value: str) -> str:
    """The matching key for labels: the same for an AccessionNumber or StudyInstanceUID everywhere."""
    return _hmac(secret, "key", value.strip()).hex()


def pseudonym(secret: str, kind: str, value: str, length: int = 24) -> str:
    return _hmac(secret, kind, value.strip()).hex()[:length]


def pseudo_uid(secret: str, uid: str) -> str:
    # 2.25.<128-bit integer>: at most 44 characters, inside the UI limit of 64.
    return "2.25." + str(int.from_bytes(_hmac(secret, "uid", uid.strip())[:16], "big"))


@dataclass
class Options:
    dates: str = "shift"  # shift | remove
    retain_patient_characteristics: bool = False


@dataclass
class Result:
    dataset: Dataset
    patient_pseudonym: str
    study_pseudonym: str
    sop_instance_uid_pseudonym: str
    study_key_hmac: str
    accession_hmac: str | None
    sex: str | None = None
    age_years: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Deidentifier:
    def __init__(self, secret: str, options: Options | None = None, profile: Profile | None = None) -> None:
        self.secret = secret
        self.options = options or Options()
        self.profile = profile or load_profile()

    def patient_key(self, ds: Dataset) -> str:
        pid = str(ds.get("PatientID", "") or "").strip()
        # Without a PatientID every anonymous study would merge into one patient; keep them apart.
        return f"id:{pid}" if pid else f"study:{ds.get('StudyInstanceUID', '')}"

    def __call__(self, ds: Dataset) -> Result:
        """De-identify ds in place (and its file meta) and return it with its pseudonyms."""
        patient_key = self.patient_key(ds)
        patient = pseudonym(self.secret, "patient", patient_key)
        study_uid = str(ds.get("StudyInstanceUID", "") or "")
        accession = str(ds.get("AccessionNumber", "") or "").strip()
        sex = str(ds.get("PatientSex", "") or "") or None
        age = _age_years(str(ds.get("PatientAge", "") or ""))
        offset = self._date_offset(patient_key)

        self._clean(ds, offset)

        ds.PatientID = patient
        ds.PatientName = patient
        ds.PatientIdentityRemoved = "YES"
        codes = [CODE_BASIC]
        method = "medtune PS3.15 E.1-1 Basic Profile"
        if self.options.dates == "shift":
            codes.append(CODE_MODIFIED_DATES)
            method += "; dates shifted per patient"
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        else:
            ds.LongitudinalTemporalInformationModified = "REMOVED"
        if self.options.retain_patient_characteristics:
            codes.append(CODE_PATIENT_CHARS)
            method += "; patient characteristics retained"
        ds.DeidentificationMethod = method
        seq = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            seq.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(seq)
        self._rebuild_meta(ds)
        keep_chars = self.options.retain_patient_characteristics
        return Result(
            dataset=ds,
            patient_pseudonym=patient,
            study_pseudonym=str(ds.get("StudyInstanceUID", "")),
            sop_instance_uid_pseudonym=str(ds.get("SOPInstanceUID", "")),
            study_key_hmac=key_hmac(self.secret, study_uid),
            accession_hmac=key_hmac(self.secret, accession) if accession else None,
            sex=sex if keep_chars else None,
            age_years=age if keep_chars else None,
        )

    def _date_offset(self, patient_key: str) -> timedelta:
        # One offset per patient, 1..3650 days back: intervals within a patient survive.
        days = int.from_bytes(_hmac(self.secret, "dateshift", patient_key)[:4], "big") % 3650 + 1
        return timedelta(days=-days)

    def _action(self, tag: int) -> str | None:
        action = self.profile.actions.get(tag)
        if action is not None:
            return action
        for mask, value, act in self.profile.masks:
            if tag & mask == value:
                return act
        return None

    def _clean(self, ds: Dataset, offset: timedelta) -> None:
        ds.remove_private_tags()
        drop: list[int] = []
        for elem in ds:
            tag = int(elem.tag)
            action = self._action(tag)
            if elem.VR == "SQ":
                if action == "X":
                    drop.append(tag)
                    continue
                for item in elem.value:
                    self._clean(item, offset)
                continue
            if action is None or action == "K":
                continue
            if tag in self.profile.patient_chars and self.options.retain_patient_characteristics:
                continue
            if (
                tag in self.profile.modified_dates
                and self.options.dates == "shift"
                and elem.VR in ("DA", "DT")
            ):
                elem.value = _shift(elem.value, elem.VR, offset)
                continue
            if tag in self.profile.modified_dates and self.options.dates == "shift" and elem.VR == "TM":
                continue  # a time of day identifies nobody once the date has moved
            if action in ("U", "U*"):
                if elem.VR == "UI" and elem.value:
                    elem.value = self._uid_value(elem.value)
                else:
                    drop.append(tag)
            elif action == "X":
                drop.append(tag)
            elif action == "Z":
                elem.value = None
            elif action == "D":
                if tag in (PATIENT_ID, PATIENT_NAME):
                    continue  # replaced by the pseudonym afterwards
                _dummy(elem)
            else:  # an action this table version added that we do not know: the safe choice
                drop.append(tag)
        for tag in drop:
            del ds[tag]

    def _uid_value(self, value: Any) -> Any:
        if not isinstance(value, str) and hasattr(value, "__iter__"):
            return [pseudo_uid(self.secret, str(v)) for v in value]
        return pseudo_uid(self.secret, str(value))

    def _rebuild_meta(self, ds: Dataset) -> None:
        old = getattr(ds, "file_meta", None)
        meta = FileMetaDataset()
        sop_class = ds.get("SOPClassUID") or (old.get("MediaStorageSOPClassUID") if old else None)
        if sop_class:
            meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
        if old is not None and "TransferSyntaxUID" in old:
            meta.TransferSyntaxUID = old.TransferSyntaxUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "MEDTUNE_0_1"
        ds.file_meta = meta


def _shift(value: Any, vr: str, offset: timedelta) -> Any:
    if value is None or value == "":
        return value
    if not isinstance(value, str | bytes) and hasattr(value, "__iter__"):
        return [_shift_one(str(v), vr, offset) for v in value]
    return _shift_one(str(value), vr, offset)


def _shift_one(text: str, vr: str, offset: timedelta) -> str:
    text = text.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return ""  # ranges, partial or malformed dates: drop rather than guess
    try:
        day = date(int(text[:4]), int(text[4:6]), int(text[6:8])) + offset
    except ValueError:
        return ""
    shifted = day.strftime("%Y%m%d")
    return shifted if vr == "DA" else shifted + text[8:]


def _age_years(text: str) -> int | None:
    text = text.strip().upper()
    if len(text) != 4 or not text[:3].isdigit():
        return None
    n = int(text[:3])
    return {"Y": n, "M": n // 12, "W": n // 52, "D": n // 365}.get(text[3])


def _dummy(elem: DataElement) -> None:
    if elem.VR == "UI":
        elem.value = "2.25.0"
    elif elem.VR in DUMMY:
        elem.value = DUMMY[elem.VR]
    elif elem.VR in NUMERIC_VRS:
        elem.value = 0
    else:
        elem.value = None
