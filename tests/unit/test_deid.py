"""De-identification by the PS3.15 E.1-1 table, on real DICOM files: actions at every depth, meta, UIDs."""

from __future__ import annotations

import io
from datetime import date

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from platform_core.dicom.deid import (
    CODE_BASIC,
    CODE_MODIFIED_DATES,
    CODE_PATIENT_CHARS,
    Deidentifier,
    Options,
    load_profile,
    pseudo_uid,
    pseudonym,
)
from tests.fixtures_dicom import PLANTED, radiograph, to_bytes, uid

SECRET = "unit-secret"
# One attribute per basic-profile action, as the table says (checked below), with a planted value.
ACTIONS = [
    ("X", "AdmissionID", "PLANTED-ADMISSION"),
    ("Z", "AccessionNumber", "PLANTED-ACC"),
    ("D", "AcquisitionDeviceProcessingDescription", "PLANTED-DEVICE"),
    ("U", "AcquisitionUID", "1.2.826.0.1.3680043.8.498.55.1"),
]
# Kept by the profile (not in the table), so its items are cleaned element by element.
CONTAINER = "ViewCodeSequence"


def nest(depth: int, ds: Dataset, keyword: str, value: str) -> None:
    """Plant keyword=value `depth` sequence levels below ds."""
    for _ in range(depth):
        item = Dataset()
        setattr(ds, CONTAINER, Sequence([item]))
        ds = item
    setattr(ds, keyword, value)


def dig(ds: Dataset, depth: int) -> Dataset:
    for _ in range(depth):
        ds = getattr(ds, CONTAINER)[0]
    return ds


def roundtrip(ds: Dataset) -> Dataset:
    """Through bytes, as ingestion reads uploads."""
    return dcmread(io.BytesIO(to_bytes(ds)))


def test_the_table_drives_the_actions_chosen() -> None:
    from pydicom.datadict import tag_for_keyword

    profile = load_profile()
    for action, keyword, _ in ACTIONS:
        assert profile.actions[int(tag_for_keyword(keyword) or 0)] == action, keyword
    assert CONTAINER not in {k for _, k, _ in ACTIONS}
    assert profile.actions.get(int(tag_for_keyword(CONTAINER) or 0)) is None


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize(("action", "keyword", "value"), ACTIONS)
def test_action_applies_at_every_depth(depth: int, action: str, keyword: str, value: str) -> None:
    ds = radiograph()
    nest(depth, ds, keyword, value)
    out = Deidentifier(SECRET)(roundtrip(ds)).dataset
    holder = dig(out, depth)
    if action == "X":
        assert keyword not in holder
    elif action == "Z":
        assert keyword in holder and not holder[keyword].value
    elif action == "D":
        assert keyword in holder and holder[keyword].value not in (None, "", value)
    else:
        assert holder[keyword].value == pseudo_uid(SECRET, value)
    assert value.encode() not in to_bytes(out)


def test_private_tags_and_file_meta_identifiers_are_removed() -> None:
    ds = roundtrip(radiograph())
    assert ds.file_meta.SourceApplicationEntityTitle == "PLANTEDAE"
    item = ds.OtherPatientIDsSequence[0]
    item.add_new(0x00291010, "LO", "PLANTED-NESTED-PRIVATE")
    out = Deidentifier(SECRET)(ds).dataset
    data = to_bytes(out)
    for value in (PLANTED["private"], "PLANTED CREATOR", "PLANTEDAE", "PLANTED-NESTED-PRIVATE"):
        assert value.encode() not in data
    assert not any(e.tag.is_private for e in out.iterall())
    meta = out.file_meta
    assert "SourceApplicationEntityTitle" not in meta
    assert meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID


def test_uids_are_consistent_across_files_and_references() -> None:
    deid = Deidentifier(SECRET)
    first = deid(roundtrip(radiograph(instance=1))).dataset
    second = deid(roundtrip(radiograph(instance=2, referenced=uid(1, 1, 1)))).dataset
    assert first.SOPInstanceUID == pseudo_uid(SECRET, uid(1, 1, 1))
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert first.StudyInstanceUID == second.StudyInstanceUID != uid(1, 1)
    assert first.SOPInstanceUID.startswith("2.25.") and len(first.SOPInstanceUID) <= 64
    # Another secret, other UIDs: nobody without the deployment secret can link them.
    assert Deidentifier("other")(roundtrip(radiograph())).dataset.SOPInstanceUID != first.SOPInstanceUID


def test_pseudonyms_are_stable_per_patient_and_secret() -> None:
    a = Deidentifier(SECRET)(roundtrip(radiograph(patient=1, study=1)))
    b = Deidentifier(SECRET)(roundtrip(radiograph(patient=1, study=2, instance=5)))
    c = Deidentifier(SECRET)(roundtrip(radiograph(patient=2)))
    assert a.patient_pseudonym == b.patient_pseudonym != c.patient_pseudonym
    assert a.dataset.PatientID == a.patient_pseudonym == str(a.dataset.PatientName)
    assert a.patient_pseudonym == pseudonym(SECRET, "patient", f"id:{PLANTED['patient_id']}-1")
    assert a.study_key_hmac != b.study_key_hmac and a.accession_hmac is not None


def test_dates_shift_by_one_offset_per_patient() -> None:
    ds = roundtrip(radiograph(patient=1))
    ds.AcquisitionDate = "20230419"  # two days after the study date
    out = Deidentifier(SECRET)(ds).dataset
    study = date.fromisoformat(f"{out.StudyDate[:4]}-{out.StudyDate[4:6]}-{out.StudyDate[6:]}")
    acq = date.fromisoformat(
        f"{out.AcquisitionDate[:4]}-{out.AcquisitionDate[4:6]}-{out.AcquisitionDate[6:]}"
    )
    assert out.StudyDate != "20230417" and (acq - study).days == 2
    again = Deidentifier(SECRET)(roundtrip(radiograph(patient=1, study=2))).dataset
    other = Deidentifier(SECRET)(roundtrip(radiograph(patient=2))).dataset
    assert again.StudyDate == out.StudyDate  # same patient, same offset
    assert other.StudyDate != out.StudyDate
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "19511203" not in str(out.get("PatientBirthDate", ""))


def test_dates_removed_when_asked() -> None:
    out = Deidentifier(SECRET, Options(dates="remove"))(roundtrip(radiograph())).dataset
    # Z empties, D puts the standard's dummy: either way the real date is gone, and no shift to undo.
    assert not out.get("StudyDate") and out.get("SeriesDate") in (None, "", "19000101")
    assert b"20230417" not in to_bytes(out)
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    codes = [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert codes == [CODE_BASIC[0]]


@pytest.mark.parametrize("retain", [False, True])
def test_retain_patient_characteristics(retain: bool) -> None:
    result = Deidentifier(SECRET, Options(retain_patient_characteristics=retain))(roundtrip(radiograph()))
    out = result.dataset
    codes = [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert codes[:2] == [CODE_BASIC[0], CODE_MODIFIED_DATES[0]]
    assert all(c.CodingSchemeDesignator == "DCM" for c in out.DeidentificationMethodCodeSequence)
    if retain:
        assert out.PatientSex == "F" and out.PatientAge == "072Y"
        assert (result.sex, result.age_years) == ("F", 72)
        assert CODE_PATIENT_CHARS[0] in codes
    else:
        assert not out.get("PatientSex") and not out.get("PatientAge")
        assert (result.sex, result.age_years) == (None, None)
        assert CODE_PATIENT_CHARS[0] not in codes
    assert out.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm"])
def test_real_files_keep_pixels_and_lose_identity(name: str) -> None:
    path = get_testdata_file(name)
    assert path is not None
    ds = dcmread(path)
    before = {str(ds.get("PatientName", "")), str(ds.get("PatientID", ""))} - {""}
    pixels = ds.get("PixelData")
    out = Deidentifier(SECRET)(ds).dataset
    data = to_bytes(out)
    for value in before:
        assert value.encode() not in data, value
    assert out.get("PixelData") == pixels and out.Modality == ds.Modality
    assert out.SOPInstanceUID.startswith("2.25.")
