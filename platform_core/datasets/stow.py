"""DICOMweb STOW-RS (PS3.18 10.5): parse multipart/related bodies, build the dicom+json reply."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.orm import Session

from platform_core.config import Settings
from platform_core.datasets.ingest import Ingestor, Outcome
from platform_core.datasets.models import Dataset as DatasetRow
from platform_core.errors import BadRequest, UnsupportedMediaType

SPOOL_BYTES = 8 * 1024 * 1024
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700


def check_content_type(content_type: str) -> bytes:
    """The boundary of a `multipart/related; type="application/dicom"` body; 415 for anything else."""
    kind, params = parse_options_header(content_type)
    part_type = params.get(b"type", b"").strip(b'"').lower()
    if kind.lower() != b"multipart/related" or part_type not in (b"application/dicom", b""):
        raise UnsupportedMediaType('STOW-RS takes multipart/related; type="application/dicom"')
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("the multipart/related body has no boundary")
    return boundary


@dataclass
class Part:
    headers: dict[str, str] = field(default_factory=dict)
    file: IO[bytes] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(SPOOL_BYTES))
    size: int = 0


def split_parts(body: IO[bytes], boundary: bytes, max_part_bytes: int) -> list[Part]:
    """Spool each part (memory up to 8 MiB, then a private unlinked temp file)."""
    parts: list[Part] = []
    field_name = bytearray()
    field_value = bytearray()

    def on_part_begin() -> None:
        parts.append(Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        field_value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1].headers[field_name.decode("latin-1").lower()] = field_value.decode("latin-1").strip()
        field_name.clear()
        field_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        part.size += end - start
        if part.size <= max_part_bytes:
            part.file.write(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        },
    )
    try:
        while chunk := body.read(1024 * 1024):
            parser.write(chunk)
        parser.finalize()
    except Exception:
        for p in parts:
            p.file.close()
        raise BadRequest("malformed multipart/related body") from None
    for p in parts:
        p.file.seek(0)
    return parts


def _uids(data: bytes) -> tuple[str | None, str | None]:
    try:
        ds = dcmread(io.BytesIO(data), force=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        return str(ds.get("SOPClassUID", "")) or None, str(ds.get("SOPInstanceUID", "")) or None
    except Exception:
        return None, None


@dataclass
class StowResult:
    status: int
    body: dict[str, Any]


def store_instances(
    session: Session, store: Any, settings: Settings, secret: str, dataset: DatasetRow, parts: list[Part]
) -> StowResult:
    """Each part through the same pipeline as /files; the reply echoes the sender's own UIDs only."""
    with Ingestor(session, store, secret, dataset) as ingestor:
        return _store(ingestor, settings, parts)


def _store(ingestor: Ingestor, settings: Settings, parts: list[Part]) -> StowResult:
    ok: list[Dataset] = []
    failed: list[Dataset] = []
    for part in parts:
        ctype = part.headers.get("content-type", "application/dicom").split(";")[0].strip().lower()
        data = part.file.read() if part.size <= settings.max_upload_bytes else b""
        part.file.close()
        sop_class, sop_instance = _uids(data) if data else (None, None)
        outcome: Outcome
        if ctype != "application/dicom" or not data:
            outcome = Outcome("rejected", "too_large" if data == b"" and part.size else "not_dicom")
            code = OUT_OF_RESOURCES if part.size > settings.max_upload_bytes else CANNOT_UNDERSTAND
        else:
            outcome = ingestor.dicom(data)
            code = CANNOT_UNDERSTAND
        item = Dataset()
        if sop_class:
            item.ReferencedSOPClassUID = sop_class
        if sop_instance:
            item.ReferencedSOPInstanceUID = sop_instance
        if outcome.outcome == "rejected":
            item.FailureReason = code
            failed.append(item)
        else:
            ok.append(item)
    ingestor.finish()
    reply = Dataset()
    if ok:
        reply.ReferencedSOPSequence = ok
    if failed:
        reply.FailedSOPSequence = failed
    status = 200 if not failed else (202 if ok else 409)
    return StowResult(status, reply.to_json_dict())
