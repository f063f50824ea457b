"""CRs with a unique planted value in every place real modalities and PACS hide an identifier.

Every planted value is recorded with where it was put, so a scan can say which one leaked and from
where. Text values are `ZQ` + 8 characters (a pattern nothing else writes); UIDs sit under one root
used nowhere else; dates, times and date-times are drawn at random. Values sit at depth 1 to 3 in X,
Z, D and U sequences, in sequences the allowlist keeps, in private sequences; in standard attributes
the table does not list; in overlays (data, label, description), curves and the icon image; in TM
and DT values; in the file meta and the preamble.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ComputedRadiographyImageStorage, ExplicitVRLittleEndian

TOKEN = re.compile(rb"ZQ[A-Z0-9]{8}")
UID_ROOT = "1.2.826.0.1.3680043.8.498.4242"
# One container of each kind: (keyword, why it is here).
CONTAINERS = [
    "RequestAttributesSequence",  # X
    "ReferencedStudySequence",  # X/Z -> Z
    "ContentSequence",  # D
    "InstitutionCodeSequence",  # X/Z/D -> D
    "ReferencedImageSequence",  # X/Z/U* -> U*: kept, UIDs replaced
    "SourceImageSequence",  # X/Z/U*: allowlist-kept in spirit, UIDs replaced
    "ViewCodeSequence",  # not in the table: kept by the allowlist
    "AnatomicRegionSequence",  # not in the table: kept by the allowlist
]
PRIVATE_GROUP = 0x0019
# Standard attributes Table E.1-1 does not list, each holding free text.
OUTSIDE_THE_TABLE = (
    "FilterType",
    "ConvolutionKernel",
    "WindowCenterWidthExplanation",
    "RescaleType",
    "PositionReferenceIndicator",
    "ContentDescription",
    "AcquisitionDeviceProcessingCode",
)


@dataclass
class Planted:
    """Planted values by where they sit: location -> value (as it is written, before encoding)."""

    values: dict[str, str] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(1729))

    def token(self, where: str) -> str:
        value = "ZQ" + "".join(self.rng.choices(string.ascii_uppercase + string.digits, k=8))
        self.values[where] = value
        return value

    def uid(self, where: str) -> str:
        value = f"{UID_ROOT}.{self.rng.randrange(10**11, 10**12)}"
        self.values[where] = value
        return value

    def date(self, where: str) -> str:
        value = (
            f"{self.rng.randrange(1931, 1999)}{self.rng.randrange(1, 13):02d}{self.rng.randrange(10, 29):02d}"
        )
        self.values[where] = value
        return value

    def time(self, where: str) -> str:
        value = (
            f"{self.rng.randrange(0, 24):02d}{self.rng.randrange(0, 60):02d}{self.rng.randrange(0, 60):02d}"
        )
        value += f".{self.rng.randrange(10**5, 10**6)}"
        self.values[where] = value
        return value

    def needles(self) -> dict[bytes, str]:
        """Every planted value as the bytes a scan looks for -> its location."""
        return {v.encode(): k for k, v in self.values.items()}

    def creator(self, where: str, name: str) -> str:
        self.values[where] = name
        return name


def _item(p: Planted, where: str) -> Dataset:
    """One item holding a planted value under every rule that applies inside a sequence."""
    item = Dataset()
    item.PatientID = p.token(f"{where}.PatientID")
    item.PatientName = p.token(f"{where}.PatientName") + "^" + p.token(f"{where}.PatientName.given")
    item.AccessionNumber = p.token(f"{where}.AccessionNumber")  # Z
    item.InstitutionName = p.token(f"{where}.InstitutionName")  # X/Z/D
    item.FilterType = p.token(f"{where}.FilterType")  # not in the table, not allowlisted
    item.CodeMeaning = p.token(f"{where}.CodeMeaning") + " Hospital"  # free text beside codes
    item.CodeValue = "R-10214"
    item.CodingSchemeDesignator = "SRT"
    item.TextValue = "John Doe " + p.token(f"{where}.TextValue")
    item.ReferencedSOPClassUID = ComputedRadiographyImageStorage
    item.ReferencedSOPInstanceUID = p.uid(f"{where}.ReferencedSOPInstanceUID")  # U
    item.StudyTime = p.time(f"{where}.StudyTime")  # TM, shifted
    block = item.private_block(PRIVATE_GROUP, p.creator(f"{where}.creator", "ZQ PRIVATE NESTED"), create=True)
    block.add_new(0x01, "LO", p.token(f"{where}.private"))
    return item


def _nest(p: Planted, keyword: str, ds: Dataset, depth: int, where: str) -> None:
    """keyword[0] ... down to `depth` levels, a planted item at each level."""
    item = _item(p, f"{where}{keyword}[{depth}]")
    if depth < 3:
        _nest(p, keyword, item, depth + 1, f"{where}{keyword}[{depth}].")
    setattr(ds, keyword, Sequence([item]))


def _private_sequence(p: Planted, ds: Dataset, where: str, depth: int = 1) -> None:
    block = ds.private_block(PRIVATE_GROUP, p.creator("creator.sq", "ZQ PRIVATE SQ"), create=True)
    item = _item(p, f"{where}private-sq[{depth}]")
    if depth < 3:
        _private_sequence(p, item, f"{where}private-sq[{depth}].", depth + 1)
    block.add_new(0x10, "SQ", Sequence([item]))


def _overlays_and_icon(p: Planted, ds: Dataset, size: int) -> None:
    ds.add_new(0x60000010, "US", size)  # OverlayRows
    ds.add_new(0x60000011, "US", size)  # OverlayColumns
    ds.add_new(0x60000040, "CS", "G")  # OverlayType
    ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
    ds.add_new(0x60000100, "US", 1)  # OverlayBitsAllocated
    ds.add_new(0x60000102, "US", 0)  # OverlayBitPosition
    data = p.token("overlay.data").encode() * (size * size // 80 + 1)
    ds.add_new(0x60003000, "OW", data[: size * size // 8])
    ds.add_new(0x60000022, "LO", p.token("overlay.description"))
    ds.add_new(0x60001500, "LO", p.token("overlay.label"))
    ds.add_new(0x60004000, "LT", p.token("overlay.comments"))
    ds.add_new(0x50002500, "LO", p.token("curve.label"))
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel = 8, 8, 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.PixelData = (p.token("icon.pixels").encode() * 7)[:64]
    icon.ImageComments = p.token("icon.comments")
    ds.IconImageSequence = Sequence([icon])


def _meta(p: Planted, ds: Dataset, instance_uid: str) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationVersionName = p.token("meta.ImplementationVersionName")
    ds.file_meta.SourceApplicationEntityTitle = p.token("meta.SourceApplicationEntityTitle")
    ds.file_meta.SendingApplicationEntityTitle = p.token("meta.SendingApplicationEntityTitle")
    ds.file_meta.PrivateInformationCreatorUID = UID(p.uid("meta.PrivateInformationCreatorUID"))
    ds.file_meta.PrivateInformation = p.token("meta.PrivateInformation").encode()
    ds.preamble = (p.token("preamble").encode() * 13)[:128]


def cr(p: Planted, n: int, size: int = 64) -> Dataset:
    """CR number n with planted values everywhere; pixels a smooth gradient plus noise."""
    w = f"cr{n}."
    ds = Dataset()
    instance = p.uid(w + "SOPInstanceUID")
    _meta(p, ds, instance)
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = p.uid(w + "StudyInstanceUID")
    ds.SeriesInstanceUID = p.uid(w + "SeriesInstanceUID")
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.PatientName = p.token(w + "PatientName") + "^" + p.token(w + "PatientName.given")
    ds.PatientID = p.token(w + "PatientID")
    ds.PatientBirthDate = p.date(w + "PatientBirthDate")
    ds.AccessionNumber = p.token(w + "AccessionNumber")
    ds.InstitutionName = p.token(w + "InstitutionName") + " Hospital"
    ds.StudyID = p.token(w + "StudyID")
    for keyword in OUTSIDE_THE_TABLE:
        setattr(ds, keyword, p.token(w + keyword))  # standard attributes outside the table
    ds.DetectorDescription = "Detector of " + p.token(w + "DetectorDescription")
    ds.StudyDate = "20230417"
    ds.StudyTime = p.time(w + "StudyTime")
    ds.SeriesTime = p.time(w + "SeriesTime")
    ds.AcquisitionTime = p.time(w + "AcquisitionTime")
    ds.TimeOfLastCalibration = p.time(w + "TimeOfLastCalibration")
    ds.AcquisitionDateTime = "20230417" + p.time(w + "AcquisitionDateTime.time") + "+0130"
    p.values[w + "AcquisitionDateTime"] = ds.AcquisitionDateTime
    for keyword in CONTAINERS:
        _nest(p, keyword, ds, 1, w)
    _private_sequence(p, ds, w)
    block = ds.private_block(PRIVATE_GROUP + 2, p.creator("creator.top", "ZQ PRIVATE TOP"), create=True)
    block.add_new(0x01, "LO", p.token(w + "private"))
    _overlays_and_icon(p, ds, size)
    rng = np.random.default_rng(n)
    y, x = np.mgrid[0:size, 0:size]
    arr = ((x + y) * (4000 / (2 * size)) + rng.normal(0, 50, (size, size))).clip(0, 4095).astype(np.uint16)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = arr.tobytes()
    return ds


def corpus(files: int = 3, size: int = 64) -> tuple[list[Dataset], Planted]:
    planted = Planted()
    return [cr(planted, n, size) for n in range(1, files + 1)], planted


def leaks(blob: bytes, planted: Planted) -> list[str]:
    """The locations of the planted values found in blob."""
    needles = planted.needles()
    found = {m.group(0) for m in TOKEN.finditer(blob)} & needles.keys()
    if UID_ROOT.encode() in blob:
        found.add(UID_ROOT.encode())
    found |= {n for n in needles if TOKEN.fullmatch(n) is None and n in blob}
    return sorted(needles.get(n, "a UID under the planted root") for n in found)
