"""Header filters run before de-identification: is this a radiograph we can train on?"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from platform_core.dicom.read import Rejected

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "MG", "IO", "PX", "RG"})
RADIOGRAPH_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image Storage - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.3",  # Digital Intra-Oral X-Ray Image Storage - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage (digitised films)
    }
)


@dataclass(frozen=True)
class Filters:
    min_image_size: int = 128
    modalities: frozenset[str] = field(default_factory=lambda: frozenset({"CR", "DX"}))
    burned_in_annotation: str = "reject"  # reject | accept


def check(ds: Dataset, filters: Filters) -> None:
    """Raise Rejected with the first reason this file cannot be used."""
    modality = str(ds.get("Modality", "") or "").upper()
    if modality not in filters.modalities:
        raise Rejected("not_radiograph")
    # For radiograph modalities the SOP class must be a projection radiograph; a dataset that
    # opts into other modalities (CT, MR, ...) takes any image storage class.
    if modality in RADIOGRAPH_MODALITIES and str(ds.get("SOPClassUID", "")) not in RADIOGRAPH_SOP_CLASSES:
        raise Rejected("not_radiograph")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise Rejected("no_pixels")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise Rejected("corrupt") from None
    if min(rows, cols) < filters.min_image_size:
        raise Rejected("too_small")
    if filters.burned_in_annotation == "reject" and str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise Rejected("burned_in_annotation")
