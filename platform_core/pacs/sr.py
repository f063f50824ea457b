"""A prediction as a DICOM Structured Report (highdicom, TID 1500 Measurement Report in a Comprehensive
3D SR): per label its probability and the operating threshold as measurements, and present/absent as
a qualitative evaluation, with the model's name and version as the algorithm identification. The SR
references the original study, series and instance, so it lands beside them in the PACS."""

from __future__ import annotations

import io
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from platform_core.dicom.read import parse
from platform_core.errors import Invalid

SCHEME = "99MEDTUNE"  # a private coding scheme: labels are the project's own names
UNITLESS = hd.sr.CodedConcept("1", "UCUM", "no units")
IMAGING_STUDY = hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging study")
SERIES_NUMBER = 9900
# The patient and study of the source, so the Secondary Capture files beside it in the PACS.
SC_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
             "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")  # fmt: skip


def _concept(code: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code[:16], scheme_designator=SCHEME, meaning=meaning[:64])


def _group(source: Dataset, model: str, prediction: dict[str, Any]) -> Any:
    algorithm = hd.sr.AlgorithmIdentification(name=model.rsplit(":", 1)[0], version=model.rsplit(":", 1)[-1])
    measurements, evaluations = [], []
    for label, p in prediction["probabilities"].items():
        threshold = float(prediction["thresholds"][label])
        pairs = ((label, "Probability of", float(p)), (f"T-{label}", "Operating threshold of", threshold))
        for code, meaning, value in pairs:
            name = _concept(code, f"{meaning} {label}")
            measurements.append(
                hd.sr.Measurement(name=name, value=value, unit=UNITLESS, algorithm_id=algorithm)
            )
        present = codes.SCT.Present if prediction["predicted"][label] else codes.SCT.Absent
        evaluations.append(hd.sr.QualitativeEvaluation(name=_concept(label, label), value=present))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"medtune {model}"),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        measurements=measurements,
        qualitative_evaluations=evaluations,
        algorithm_id=algorithm,
    )


def build(source: Dataset, model: str, prediction: dict[str, Any]) -> bytes:
    """The SR's bytes (Part 10) for `prediction` (serving's shape) on `source`; `model` is "name:version"."""
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=IMAGING_STUDY,
        imaging_measurements=[_group(source, model, prediction)],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source], content=report[0], series_number=SERIES_NUMBER, series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medtune",
        series_description=f"medtune {model}"[:64],
    )  # fmt: skip
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def heatmap(source: Dataset, model: str, png: bytes) -> bytes:
    """The prediction's heatmap overlay (an RGB PNG) as a Secondary Capture in the source's study and
    patient (its attributes copied from the source, a new series), built with pydicom: highdicom's
    SCImage wants a patient orientation a projection radiograph may not carry."""
    import numpy as np
    from PIL import Image
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.uint8)
    sc = Dataset()
    for keyword in SC_COPIED:
        if keyword in source:
            setattr(sc, keyword, source.data_element(keyword).value)  # type: ignore[union-attr]
    sc.SOPClassUID, sc.SOPInstanceUID = SecondaryCaptureImageStorage, hd.UID()
    sc.SeriesInstanceUID, sc.SeriesNumber, sc.InstanceNumber = hd.UID(), SERIES_NUMBER + 1, 1
    sc.Modality, sc.ConversionType, sc.Manufacturer = "OT", "WSD", "medtune"
    sc.SeriesDescription = f"medtune {model} heatmap"[:64]
    sc.Rows, sc.Columns = rgb.shape[:2]
    sc.SamplesPerPixel, sc.PhotometricInterpretation, sc.PlanarConfiguration = 3, "RGB", 0
    sc.BitsAllocated, sc.BitsStored, sc.HighBit, sc.PixelRepresentation = 8, 8, 7, 0
    sc.PixelData = rgb.tobytes()
    sc.file_meta = FileMetaDataset()
    sc.file_meta.MediaStorageSOPClassUID, sc.file_meta.MediaStorageSOPInstanceUID = (
        sc.SOPClassUID,
        sc.SOPInstanceUID,
    )
    sc.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    sc.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def check_request(content_type: str) -> None:
    """REST predict with format=sr: one DICOM image, whose study the SR references."""
    if content_type.split(";")[0].strip().lower() != "application/dicom":
        raise Invalid("format=sr answers one DICOM image sent as application/dicom", param="format")


def for_request(data: bytes, model: str, predictions: list[dict[str, Any]]) -> bytes:
    """The SR for REST predict's answer on one DICOM body (already checked and predicted)."""
    if len(predictions) != 1:
        raise Invalid("format=sr answers one DICOM image", param="format")
    return build(parse(data).dataset, model, predictions[0])


def read_probabilities(data: bytes) -> dict[str, float]:
    """The probabilities an SR built here carries, read back with highdicom (label -> probability)."""
    sr = hd.sr.srread(io.BytesIO(data))
    content: Any = sr.content  # a MeasurementReport for the SRs built here
    out: dict[str, float] = {}
    for group in content.get_image_measurement_groups():
        for m in group.get_measurements():
            if m.name.meaning.startswith("Probability of "):
                out[m.name.meaning.removeprefix("Probability of ")] = float(m.value)
    return out
