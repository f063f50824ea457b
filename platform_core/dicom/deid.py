"""De-identification in memory per DICOM PS3.15 Annex E Table E.1-1, at every depth, safe by default.

The Basic Application Level Confidentiality Profile applied to every attribute at every nesting level,
the file meta rebuilt, and everything the table does not list removed unless the allowlist
(platform_core/dicom/data/deid-allowlist.json) keeps it. The retain options a dataset asks for keep
what their column of the table (or the allowlist's options) names. Pseudonyms and UIDs are
HMAC-SHA256 of the original value under the deployment secret, so the same patient or UID maps to the
same value in every file and upload. Rules live in deid_rules, value rewriting in deid_values.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from platform_core.dicom import deid_rules as rules
from platform_core.dicom.deid_rules import CODES, Allowlist, Profile, load_allowlist, load_profile
from platform_core.dicom.deid_values import DateShift, age_years, dummy

__all__ = [
    "CODES",
    "Deidentifier",
    "Options",
    "Result",
    "key_hmac",
    "load_profile",
    "pseudo_uid",
    "pseudonym",
]

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
CODE_BASIC = CODES["basic"]
CODE_MODIFIED_DATES = CODES[rules.MODIFIED_DATES]
CODE_PATIENT_CHARS = CODES[rules.PATIENT_CHARS]
DATE_VRS = frozenset({"DA", "DT", "TM"})
# What the report counts, per file and per dataset.
ACTIONS = ("removed", "emptied", "replaced", "pseudonymised", "shifted")
# File meta elements the rebuilt header writes itself.
META_REBUILT = frozenset({0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013})


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


@dataclass(frozen=True)
class Options:
    dates: str = "shift"  # shift | remove | keep
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_safe_private: bool = False

    def enabled(self) -> list[str]:
        """The options on, by the names deid_rules uses, in CID 7050 order."""
        on = [f"dates={self.dates}"] if self.dates in ("keep", "shift") else []
        flags = (rules.PATIENT_CHARS, rules.DEVICE, rules.SAFE_PRIVATE, rules.INSTITUTION)
        return on + [name for name in flags if getattr(self, name)]


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
    counts: dict[str, int] = field(default_factory=dict)  # action -> attributes, never a value
    kept: dict[str, str] = field(default_factory=dict)  # keyword -> the option that kept it


class Deidentifier:
    def __init__(
        self, secret: str, options: Options | None = None, profile: Profile | None = None,
        allowlist: Allowlist | None = None,
    ) -> None:  # fmt: skip
        self.secret = secret
        self.options = options or Options()
        self.profile = profile or load_profile()
        self.allowlist = allowlist or load_allowlist()
        self.enabled = frozenset(self.options.enabled())
        self.safe_private = rules.load_safe_private() if self.options.retain_safe_private else frozenset()

    def patient_key(self, ds: Dataset) -> str:
        pid = str(ds.get("PatientID", "") or "").strip()
        # Without a PatientID every anonymous study would merge into one patient; keep them apart.
        return f"id:{pid}" if pid else f"study:{ds.get('StudyInstanceUID', '')}"

    def date_shift(self, patient_key: str) -> DateShift:
        # One shift per patient, 1..3650 days and 0..86399 seconds back: intervals within a patient survive.
        digest = _hmac(self.secret, "dateshift", patient_key)
        return DateShift(
            int.from_bytes(digest[:4], "big") % 3650 + 1, int.from_bytes(digest[4:8], "big") % 86400
        )

    def __call__(self, ds: Dataset) -> Result:
        """De-identify ds in place (and its file meta) and return it with its pseudonyms and counts."""
        patient_key = self.patient_key(ds)
        patient = pseudonym(self.secret, "patient", patient_key)
        study_uid = str(ds.get("StudyInstanceUID", "") or "")
        accession = str(ds.get("AccessionNumber", "") or "").strip()
        sex = str(ds.get("PatientSex", "") or "") or None
        age = age_years(str(ds.get("PatientAge", "") or ""))

        walk = Walk(self, patient, self.date_shift(patient_key))
        walk.dataset(ds)
        self._mark(ds, patient)
        walk.counts["removed"] += self._rebuild_meta(ds)
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
            counts={a: walk.counts[a] for a in ACTIONS},
            kept=walk.kept,
        )

    def _mark(self, ds: Dataset, patient: str) -> None:
        """The patient's pseudonym and the PS3.15 markers of what was done."""
        ds.PatientID = patient
        ds.PatientName = patient
        ds.PatientIdentityRemoved = "YES"
        dates = self.options.dates
        ds.LongitudinalTemporalInformationModified = {"shift": "MODIFIED", "keep": "UNMODIFIED"}.get(
            dates, "REMOVED")  # fmt: skip
        on = self.options.enabled()
        ds.DeidentificationMethod = "medtune PS3.15 E.1-1 Basic Profile, allowlist" + "".join(
            f"; {o}" for o in on
        )
        items = []
        for name in ["basic", *on]:
            item = Dataset()
            item.CodeValue, item.CodeMeaning = CODES[name]
            item.CodingSchemeDesignator = "DCM"
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)

    def _rebuild_meta(self, ds: Dataset) -> int:
        """A new file meta from the de-identified dataset; returns how many old elements it dropped."""
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
        ds.preamble = b"\x00" * 128  # free-form bytes: they may carry anything
        return sum(1 for e in old if int(e.tag) not in META_REBUILT) if old is not None else 0


class Walk:
    """One file's pass: every element at every depth, with the counts of what was done."""

    def __init__(self, deid: Deidentifier, patient: str, shift: DateShift) -> None:
        self.deid = deid
        self.profile = deid.profile
        self.patient = patient
        self.shift = shift
        self.counts: Counter[str] = Counter()
        self.kept: dict[str, str] = {}

    def dataset(self, ds: Dataset) -> None:
        drop = [elem.tag for elem in ds if not self.element(ds, elem)]
        for tag in drop:
            del ds[tag]

    def element(self, ds: Dataset, elem: DataElement) -> bool:
        """Apply the rules to one element in place; False means remove it."""
        tag = int(elem.tag)
        if elem.tag.is_private:
            return self._private(ds, elem)
        if tag in (PATIENT_ID, PATIENT_NAME):
            elem.value = self.patient  # nested copies too: the patient's pseudonym, never the original
            self.counts["pseudonymised"] += 1
            return True
        if self._shiftable(tag, elem.VR):
            elem.value = self.shift.value(elem.VR, elem.value)
            self.counts["shifted"] += 1
            return True
        option = self._option(tag, elem.VR)
        if option is not None:
            self.kept[elem.keyword or f"{tag:08X}"] = option
            self._items(elem)
            return True
        action = self.profile.action(tag)
        if action is None:
            return self._allowlisted(tag, elem)
        if elem.VR == "SQ":
            return self._sequence(elem, action)
        return self._apply(elem, action)

    def _option(self, tag: int, vr: str) -> str | None:
        """The enabled option that keeps this tag, from the table's columns or the allowlist's options.
        The dates option alone decides a date or time (a calibration date is not kept by device identity)."""
        if vr in DATE_VRS and self.deid.options.dates != "keep":
            return None
        for option in self.profile.keeps.get(tag, ()):
            if option in self.deid.enabled:
                return option
        extra = self.deid.allowlist.by_option.get(tag)
        return extra if extra in self.deid.enabled else None

    def _shiftable(self, tag: int, vr: str) -> bool:
        return self.deid.options.dates == "shift" and tag in self.profile.modified_dates and vr in DATE_VRS

    def _items(self, elem: DataElement) -> None:
        if elem.VR == "SQ":
            for item in elem.value:
                self.dataset(item)

    def _sequence(self, elem: DataElement, action: str) -> bool:
        if action == "X":
            self.counts["removed"] += 1
            return False
        if action in ("Z", "D"):  # never walked into: an empty sequence is the dummy
            elem.value = Sequence()
            self.counts["emptied" if action == "Z" else "replaced"] += 1
            return True
        self._items(elem)  # U, U*, K: keep the structure, each item by the same rules
        return True

    def _apply(self, elem: DataElement, action: str) -> bool:
        if action == "Z":
            elem.value = None
            self.counts["emptied"] += 1
            return True
        if action == "D":
            dummy(elem)
            self.counts["replaced"] += 1
            return True
        if action in ("U", "U*") and elem.VR == "UI" and elem.value:
            elem.value = self._uid_value(elem.value)
            self.counts["pseudonymised"] += 1
            return True
        self.counts["removed"] += 1  # X, and any action this table version added that we do not know
        return False

    def _allowlisted(self, tag: int, elem: DataElement) -> bool:
        allow = self.deid.allowlist
        if tag in allow.tags and allow.value_ok(elem.VR, elem.value):
            self._items(elem)
            return True
        self.counts["removed"] += 1
        return False

    def _private(self, ds: Dataset, elem: DataElement) -> bool:
        """Removed, unless the safe-private option is on and the attribute is listed as safe."""
        if self.deid.safe_private:
            group, number = elem.tag.group, elem.tag.element
            creator_tag = (group << 16) | (number >> 8) if number > 0xFF else int(elem.tag)
            creator = str(ds[creator_tag].value) if creator_tag in ds else ""
            listed = {(g, c) for g, c, _ in self.deid.safe_private}
            safe = (group, creator, number & 0xFF) in self.deid.safe_private or (
                number <= 0xFF and (group, creator) in listed)  # fmt: skip
            if safe:
                self.kept[f"{group:04X},{creator},{number & 0xFF:02X}"] = rules.SAFE_PRIVATE
                return True
        self.counts["removed"] += 1
        return False

    def _uid_value(self, value: Any) -> Any:
        if not isinstance(value, str) and hasattr(value, "__iter__"):
            return [pseudo_uid(self.deid.secret, str(v)) for v in value]
        return pseudo_uid(self.deid.secret, str(value))
