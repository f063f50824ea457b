"""De-identification by the PS3.15 E.1-1 table, on real DICOM files: actions at every depth, meta, UIDs,
the allowlist, times, the retain options and the per-file counts."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from platform_core.dicom import pixels
from platform_core.dicom.deid import ACTIONS as COUNTED
from platform_core.dicom.deid import (
    CODE_BASIC,
    CODE_MODIFIED_DATES,
    CODE_PATIENT_CHARS,
    Deidentifier,
    Options,
    Result,
    load_profile,
    pseudo_uid,
    pseudonym,
)
from platform_core.dicom.deid_rules import ALLOWLIST_PATH, TEXT_VRS
from platform_core.dicom.deid_values import DateShift
from platform_core.dicom.read import Rejected, parse
from platform_core.dicom.validate import Filters, check
from tests.fixtures_dicom import PLANTED, radiograph, to_bytes, uid
from tests.phi_corpus import corpus, leaks

SECRET = "unit-secret-" + "0" * 32
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


# --- the allowlist, sequences by action, times, options, counts ------------------------------------


def test_the_allowlist_is_data_outside_the_table_and_holds_codes_only() -> None:
    data = json.loads(ALLOWLIST_PATH.read_text())
    table = load_profile()
    for group, keywords in data["keep"].items():
        for keyword in keywords:
            tag = int(tag_for_keyword(keyword) or 0)
            assert tag and table.action(tag) is None, keyword
            if dictionary_VR(tag) in TEXT_VRS:
                assert group == "code_items", keyword  # free text never; code values only
    assert {"PixelData", "ViewCodeSequence", "PhotometricInterpretation", "WindowCenter"} <= {
        k for ks in data["keep"].values() for k in ks
    }


def clean(ds: Dataset, **options: Any) -> tuple[Dataset, Result]:
    result = Deidentifier(SECRET, Options(**options))(roundtrip(ds))
    return result.dataset, result


def test_no_planted_value_survives_in_any_place() -> None:
    files, planted = corpus(2)
    assert len(leaks(to_bytes(files[0]), planted)) > 100  # the scan finds what is there
    for ds in files:
        out, _ = clean(ds)
        assert leaks(to_bytes(out), planted) == []


def test_sequences_get_their_action_and_never_keep_dropped_content() -> None:
    files, _ = corpus(1)
    out, result = clean(files[0])
    assert "RequestAttributesSequence" not in out  # X
    assert len(out.ReferencedStudySequence) == 0  # Z
    assert len(out.ContentSequence) == 0 and len(out.InstitutionCodeSequence) == 0  # D
    for keyword in ("ReferencedImageSequence", "SourceImageSequence", "ViewCodeSequence"):
        item = getattr(out, keyword)[0]
        for _ in range(2):  # depth 1 to 3: the same rules at every level
            assert item.PatientID == result.patient_pseudonym == str(item.PatientName)
            assert item.ReferencedSOPInstanceUID.startswith("2.25.")
            assert item.CodeValue == "R-10214" and "CodeMeaning" not in item and "TextValue" not in item
            assert "FilterType" not in item and not item.AccessionNumber
            assert not any(e.tag.is_private for e in item)
            item = getattr(item, keyword)[0]
    for keyword in ("IconImageSequence", "FilterType", "DetectorDescription", "RescaleType"):
        assert keyword not in out
    assert not any(e.tag.group & 0xFF00 in (0x5000, 0x6000) for e in out)  # curves and overlays


def test_times_move_with_the_date_shift_and_lose_their_timezone() -> None:
    ds = radiograph()
    ds.StudyTime, ds.SeriesTime = "101500.25", "103000"
    ds.AcquisitionDateTime = "20230417101500.25+0130"
    out, _ = clean(ds)
    assert out.StudyTime != "101500.25" and out.StudyTime.endswith(".25")
    study, series = (
        int(t[:2]) * 3600 + int(t[2:4]) * 60 + int(t[4:6]) for t in (out.StudyTime, out.SeriesTime)
    )
    assert (series - study) % 86400 == 15 * 60  # intervals within the day survive
    assert out.AcquisitionDateTime == out.StudyDate + out.StudyTime  # the same moment, no offset
    removed, _ = clean(ds, dates="remove")
    assert not removed.get("StudyTime") and removed.get("SeriesTime") in (None, "", "000000")
    kept, _ = clean(ds, dates="keep")
    assert kept.StudyTime == "101500.25" and kept.StudyDate == "20230417"
    assert [c.CodeValue for c in kept.DeidentificationMethodCodeSequence] == ["113100", "113106"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("235959", "235849"), ("0001", "235950"), ("12", "115850"), ("10:15:00", "101350"), ("25", ""),
     ("1015-1030", "")],
)  # fmt: skip
def test_a_time_shift_wraps_at_midnight_and_drops_what_it_cannot_read(value: str, expected: str) -> None:
    assert DateShift(days=1, seconds=70).tm(value) == expected


def test_date_times_shift_both_parts_and_drop_partial_values() -> None:
    shift = DateShift(days=2, seconds=3600)
    assert shift.dt("20230417001500-0500") == "20230415231500"
    assert shift.dt("20230417") == "20230415230000" and shift.dt("2023") == ""


@pytest.mark.parametrize(
    ("option", "code", "kept"),
    [
        ("retain_device_identity", "113109", {"Manufacturer", "StationName", "DeviceSerialNumber"}),
        ("retain_institution_identity", "113112", {"InstitutionName", "InstitutionCodeSequence"}),
        ("retain_patient_characteristics", "113108", {"PatientSex", "PatientAge"}),
    ],
)
def test_a_retain_option_keeps_what_it_names_and_says_so(option: str, code: str, kept: set[str]) -> None:
    ds = radiograph()
    ds.Manufacturer, ds.StationName, ds.DeviceSerialNumber = "ACME", "XR-ROOM-1", "SN-1"
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "H1", "99LOCAL", "Planted Hospital"
    ds.InstitutionCodeSequence = Sequence([item])
    out, result = clean(ds, **{option: True})
    assert code in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert {k for k, o in result.kept.items() if o == option} == kept
    assert all(k in out for k in kept)
    if option == "retain_institution_identity":  # kept, and still walked: its free text goes
        assert out.InstitutionCodeSequence[0].CodeValue == "H1"
        assert "CodeMeaning" not in out.InstitutionCodeSequence[0]
    default, plain = clean(ds)
    originals = {"Manufacturer": b"ACME", "StationName": b"XR-ROOM-1", "DeviceSerialNumber": b"SN-1",
                 "InstitutionName": PLANTED["institution"].encode(), "InstitutionCodeSequence": b"H1",
                 "PatientSex": b"F", "PatientAge": b"072Y"}  # fmt: skip
    data = to_bytes(default)
    assert not plain.kept
    assert all(originals[k] not in data for k in kept if len(originals[k]) > 1)
    assert not default.get("PatientSex") and not default.get("PatientAge")


def test_safe_private_keeps_only_listed_private_attributes() -> None:
    out, result = clean(radiograph(), retain_safe_private=True)
    assert "113111" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert not any(e.tag.is_private for e in out.iterall())  # none of these is on the safe list
    assert result.counts["removed"] > 0


def test_counts_say_what_was_done_never_a_value() -> None:
    files, planted = corpus(1)
    _, result = clean(files[0])
    assert set(result.counts) == set(COUNTED) and all(result.counts[a] > 0 for a in COUNTED)
    assert leaks(json.dumps([result.counts, result.kept]).encode(), planted) == []


def test_allowlisted_text_must_read_as_a_code() -> None:
    ds = radiograph()
    ds.BodyPartExamined = "Planted chest of J. Doe"  # not the CS repertoire: not a code
    ds.ViewPosition = "PA"
    out, _ = clean(ds)
    assert "BodyPartExamined" not in out and out.ViewPosition == "PA"


def _real_files() -> list[Path]:
    """pydicom's own test files, pydicom-data's (package data_store) and deid-data's, read from the
    installed folders (pydicom's get_testdata_files("*") tries to download the ones it lacks)."""
    import data_store
    import deid_data
    import pydicom.data

    roots = [Path(pydicom.data.DATA_ROOT) / "test_files", Path(data_store.__file__).parent / "data",
             Path(deid_data.__file__).parent / "data"]  # fmt: skip
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file() and p.suffix in (".dcm", ""))


def test_real_crs_and_dxs_from_pydicom_pydicom_data_and_deid_data_still_pass() -> None:
    passed = []
    for path in _real_files():
        try:
            ds = parse(path.read_bytes()).dataset
        except Rejected:
            continue  # not DICOM enough to read: rejected before de-identification, as before
        if str(ds.get("Modality", "")) not in ("CR", "DX"):
            Deidentifier(SECRET)(ds)  # every other file de-identifies without an error too
            continue
        check(ds, Filters(min_image_size=16))
        out = Deidentifier(SECRET)(ds).dataset
        assert pixels.decode(roundtrip(out)).std() > 0, path
        passed.append(path.name)
    assert len(passed) >= 9 and "cat.dcm" in passed  # pydicom-data's CRs and deid-data's DX


@pytest.mark.parametrize("dates", ["shift", "remove"])
def test_the_dates_option_alone_decides_a_date_another_option_would_keep(dates: str) -> None:
    ds = radiograph()
    ds.DateOfLastCalibration, ds.TimeOfLastCalibration = "20220301", "080000"  # device identity rows
    out, result = clean(ds, dates=dates, retain_device_identity=True)
    assert out.get("DateOfLastCalibration") != "20220301" and out.get("TimeOfLastCalibration") != "080000"
    assert "DateOfLastCalibration" not in result.kept
