"""Image datasets (PNG/JPEG): the MURA folder layout or a manifest CSV; ids pseudonymised like DICOM's."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass

from PIL import Image as PILImage

from platform_core.datasets import repository
from platform_core.datasets.ingest import Ingestor, Outcome
from platform_core.datasets.labels import parse_value
from platform_core.datasets.models import Dataset
from platform_core.dicom import pixels
from platform_core.dicom.deid import key_hmac, pseudo_uid, pseudonym
from platform_core.dicom.read import Rejected
from platform_core.errors import Invalid

MURA = re.compile(r"(?:^|/)(patient\d+)/(study\d+)_(positive|negative)/[^/]+\.(?:png|jpe?g)$", re.IGNORECASE)
BODY_PART = re.compile(r"(?:^|/)XR_([A-Z]+)/", re.IGNORECASE)


def is_image(head: bytes) -> bool:
    return head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"))


@dataclass(frozen=True)
class ImageMeta:
    patient_id: str
    study_id: str
    labels: dict[str, int]
    body_part: str | None = None


def mura_meta(path: str, dataset: Dataset) -> ImageMeta | None:
    m = MURA.search(path.replace("\\", "/"))
    if m is None:
        return None
    part = BODY_PART.search(path)
    positive = 1 if m.group(3).lower() == "positive" else 0
    # MURA is one binary label per study; it goes to the dataset's first label.
    return ImageMeta(
        m.group(1), m.group(2), {dataset.labels[0]: positive}, part.group(1).upper() if part else None
    )


class Manifest:
    """`path, patient_id, study_id` + one column per label; matched by full path, then file name."""

    def __init__(self, data: bytes, dataset: Dataset) -> None:
        try:
            text = data.decode("utf-8-sig")
            reader = csv.DictReader(io.StringIO(text))
            fields = [f.strip() for f in (reader.fieldnames or [])]
        except (UnicodeDecodeError, csv.Error):
            raise Invalid("the manifest is not a UTF-8 CSV", param="manifest") from None
        missing = {"path", "patient_id", "study_id"} - set(fields)
        if missing:
            raise Invalid(f"the manifest lacks column(s) {', '.join(sorted(missing))}", param="manifest")
        unknown = set(fields) - {"path", "patient_id", "study_id", "split"} - set(dataset.labels)
        if unknown:
            raise Invalid(
                f"the manifest has unknown label column(s) {', '.join(sorted(unknown))}", param="manifest"
            )
        self.by_path: dict[str, ImageMeta] = {}
        self.by_name: dict[str, ImageMeta] = {}
        try:
            for n, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                labels: dict[str, int] = {}
                for label in dataset.labels:
                    if row.get(label):
                        value = parse_value(row[label])
                        if value is None:
                            raise Invalid(f"manifest row {n}: bad value for '{label}'", param="manifest")
                        labels[label] = value
                if not row["path"] or not row["patient_id"] or not row["study_id"]:
                    raise Invalid(
                        f"manifest row {n}: path, patient_id and study_id are required", param="manifest"
                    )
                meta = ImageMeta(row["patient_id"], row["study_id"], labels)
                path = row["path"].replace("\\", "/").lstrip("./")
                self.by_path[path] = meta
                self.by_name[path.rsplit("/", 1)[-1]] = meta
        except csv.Error:
            raise Invalid("the manifest is not a valid CSV", param="manifest") from None

    def find(self, path: str) -> ImageMeta | None:
        path = path.replace("\\", "/").lstrip("./")
        return self.by_path.get(path) or self.by_name.get(path.rsplit("/", 1)[-1])


def ingest_image(ingestor: Ingestor, data: bytes, meta: ImageMeta) -> Outcome:
    """A PNG/JPEG re-encoded as pixels alone, its patient and study pseudonymised like DICOM's."""
    secret, dataset = ingestor.secret, ingestor.dataset
    source = "png" if data.startswith(b"\x89PNG") else "jpeg"
    try:
        opened = pixels.open_image(data, ingestor.caps.max_pixels)  # the header's size, before decoding
    except Rejected as exc:
        return ingestor.reject(exc.reason, source, exc.detail)
    try:
        with opened as img:
            width, height = img.size
            if min(width, height) < ingestor.opts.min_image_size:
                return ingestor.reject("too_small", source)
            img.load()
            # Re-encode the pixels alone: PNG text chunks and JPEG EXIF can carry names and dates.
            clean = PILImage.new(img.mode, img.size)
            clean.frombytes(img.tobytes())
            if clean.mode not in ("L", "RGB", "I;16", "I", "LA", "RGBA"):
                clean = clean.convert("RGB")
            out = io.BytesIO()
            clean.save(out, format="PNG", compress_level=1)
    except Exception:
        return ingestor.reject("undecodable", source)
    patient_key = f"id:{meta.patient_id}"
    study_key = f"{meta.patient_id}/{meta.study_id}"
    study_hmac = key_hmac(secret, study_key)
    study_pseudo = pseudo_uid(secret, "study:" + study_key)
    patient = pseudonym(secret, "patient", patient_key)
    study_id = ingestor.study(
        study_hmac, accession_hmac=None, study_pseudonym=study_pseudo, patient_pseudonym=patient
    )
    if meta.labels:
        repository.upsert_label(ingestor.session, dataset.id, study_hmac, meta.labels, None)
    instance = pseudo_uid(secret, "image:" + study_key + ":" + hashlib.sha256(data).hexdigest())
    return ingestor.add(
        f"datasets/{dataset.id}/images/{instance}.png",
        out.getvalue(),
        "image/png",
        study_id=study_id,
        study_pseudonym=study_pseudo,
        patient_pseudonym=patient,
        sop_instance_uid_pseudonym=instance,
        source=source,
        rows=height,
        columns=width,
        body_part=meta.body_part,
    )
