"""Corpus builders: real DICOM files written by pydicom, with identifiers planted where they hide."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import UID, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, JPEGBaseline8Bit

# Every string here is an identifier that must appear nowhere once ingested.
PLANTED = {
    "patient_name": "Planted^Jane^Q",
    "patient_id": "PLANTED-PID-7731",
    "other_pid": "PLANTED-OTHER-PID-5512",
    "accession": "PLACC9",
    "institution": "Planted General Hospital",
    "physician": "Planted^Referrer",
    "request_id": "PLANTED-REQPROC-42",
    "private": "PLANTED-PRIVATE-SECRET",
    "birth_date": "19511203",
    "address": "12 Planted Street",
    "study_id": "PLSTUDY77",
}
ROOT = "1.2.826.0.1.3680043.8.498.77"


def uid(*parts: int) -> str:
    return str(".".join([ROOT, *map(str, parts)]))


def radiograph(
    *,
    patient: int = 1,
    study: int = 1,
    instance: int = 1,
    size: int = 160,
    pixels: np.ndarray | None = None,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    burned_in: str | None = None,
    with_pixels: bool = True,
    referenced: str | None = None,
    seed: int = 0,
) -> Dataset:
    """A DX radiograph with identifiers planted at the top level, in nested sequences and in private tags."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid(patient, study, instance))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "PLANTEDAE"
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = uid(patient, study, instance)
    ds.StudyInstanceUID = uid(patient, study)
    ds.SeriesInstanceUID = uid(patient, study, 0)
    ds.FrameOfReferenceUID = uid(patient, study, 0, 1)
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientName = f"{PLANTED['patient_name']}{patient}"
    ds.PatientID = f"{PLANTED['patient_id']}-{patient}"
    ds.PatientBirthDate = PLANTED["birth_date"]
    ds.PatientSex = "F"
    ds.PatientAge = "072Y"
    ds.PatientAddress = PLANTED["address"]
    ds.AccessionNumber = f"{PLANTED['accession']}{patient}{study}"
    ds.StudyID = PLANTED["study_id"]
    ds.InstitutionName = PLANTED["institution"]
    ds.ReferringPhysicianName = PLANTED["physician"]
    ds.StudyDate = "20230417"
    ds.SeriesDate = "20230417"
    ds.StudyTime = "101500"
    other = Dataset()
    other.PatientID = f"{PLANTED['other_pid']}-{patient}"
    other.IssuerOfPatientID = PLANTED["institution"]
    ds.OtherPatientIDsSequence = Sequence([other])
    req = Dataset()
    req.RequestedProcedureID = PLANTED["request_id"]
    req.ScheduledProcedureStepID = PLANTED["request_id"]
    req.AccessionNumber = ds.AccessionNumber
    ds.RequestAttributesSequence = Sequence([req])
    if referenced:
        ref = Dataset()
        ref.ReferencedSOPClassUID = DigitalXRayImageStorageForPresentation
        ref.ReferencedSOPInstanceUID = referenced
        ds.ReferencedImageSequence = Sequence([ref])
    block = ds.private_block(0x0011, "PLANTED CREATOR", create=True)
    block.add_new(0x01, "LO", PLANTED["private"])
    block.add_new(0x02, "PN", PLANTED["patient_name"])
    if burned_in:
        ds.BurnedInAnnotation = burned_in
    if with_pixels:
        if pixels is None:
            rng = np.random.default_rng(seed + patient * 1000 + study * 10 + instance)
            y, x = np.mgrid[0:size, 0:size]
            pixels = ((x + y) * (4000 / (2 * size)) + rng.normal(0, 50, (size, size))).clip(0, 4095)
        arr = np.asarray(pixels, dtype=np.uint16)
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.PixelData = arr.tobytes()
    else:
        ds.Rows, ds.Columns = size, size
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def undecodable(patient: int = 90) -> bytes:
    """JPEG Baseline transfer syntax whose fragments are not JPEG."""
    ds = radiograph(patient=patient)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\xff\xd8 not a jpeg at all" * 8])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def png(size: int = 128, seed: int = 0, text: str | None = None) -> bytes:
    from PIL import Image, PngImagePlugin

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    arr = ((x + y) * (200 / (2 * size)) + rng.normal(0, 10, (size, size))).clip(0, 255).astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def learnable_pixels(label: int, rng: np.random.Generator) -> np.ndarray:
    """64 x 64 noise with a bright bar high (label 1) or low (label 0): a tiny model learns it in an epoch."""
    img = rng.integers(0, 600, (64, 64)).astype(np.uint16)
    top = 6 if label else 38
    img[top : top + 18, 16:48] = 3800
    return img
