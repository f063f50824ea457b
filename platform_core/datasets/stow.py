"""DICOMweb STOW-RS (PS3.18 10.5): multipart/related bodies ingested part by part, the dicom+json reply."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from pydicom.dataset import Dataset
from python_multipart.multipart import parse_options_header
from sqlalchemy.orm import Session

from platform_core.config import Settings
from platform_core.datasets import parts
from platform_core.datasets.ingest import Ingestor
from platform_core.datasets.models import Dataset as DatasetRow
from platform_core.datasets.parts import Part
from platform_core.dicom.read import Caps, header
from platform_core.errors import BadRequest, UnsupportedMediaType

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


def _uids(fh: IO[bytes]) -> tuple[str | None, str | None]:
    """The sender's own UIDs, for the reply; the header alone is read (a part may be huge)."""
    try:
        ds = header(fh, ["SOPClassUID", "SOPInstanceUID"])  # a deflate bomb is not inflated for this
        return str(ds.get("SOPClassUID", "")) or None, str(ds.get("SOPInstanceUID", "")) or None
    except Exception:
        return None, None


@dataclass
class StowResult:
    status: int
    body: dict[str, Any]


def store_stream(
    session: Session,
    store: Any,
    settings: Settings,
    secret: str,
    dataset: DatasetRow,
    boundary: bytes,
    blocks: Iterable[bytes],
    commit: Callable[[], None] | None = None,
) -> StowResult:
    """Each part through the same pipeline as /files as soon as it has arrived (one held at a time);
    the reply echoes the sender's own UIDs only. With `commit`, what is recorded is committed before
    each block is read from the client: no transaction waits on the network."""
    with Ingestor(session, store, secret, dataset, commit, Caps.of(settings)) as ingestor:
        stow = _Stow(ingestor, settings)
        parts.stream_parts(boundary, blocks, stow.part, settings.max_multipart_parts, stow.checkpoint)
        return stow.finish()


class _Stow:
    def __init__(self, ingestor: Ingestor, settings: Settings) -> None:
        self.ingestor = ingestor
        self.settings = settings
        # (SOP class, SOP instance, failure reason or None) per part: small, the reply is built at the end.
        self.results: list[tuple[str | None, str | None, int | None]] = []

    def part(self, part: Part) -> None:
        ctype = part.content_type or "application/dicom"
        data = part.read(self.settings.max_upload_bytes)
        sop_class, sop_instance = _uids(part.file) if part.size else (None, None)
        if data is None:
            code: int | None = OUT_OF_RESOURCES
        elif ctype != "application/dicom" or not data:
            code = CANNOT_UNDERSTAND
        else:
            outcome = self.ingestor.dicom(data)
            code = CANNOT_UNDERSTAND if outcome.outcome == "rejected" else None
        self.results.append((sop_class, sop_instance, code))

    def checkpoint(self) -> None:
        """Before the next block is read from the client: commit (pixel tasks go in full chunks)."""
        self.ingestor.checkpoint(hold_tasks=True)

    def finish(self) -> StowResult:
        self.ingestor.finish()
        ok: list[Dataset] = []
        failed: list[Dataset] = []
        for sop_class, sop_instance, code in self.results:
            item = Dataset()
            if sop_class:
                item.ReferencedSOPClassUID = sop_class
            if sop_instance:
                item.ReferencedSOPInstanceUID = sop_instance
            if code is not None:
                item.FailureReason = code
                failed.append(item)
            else:
                ok.append(item)
        reply = Dataset()
        if ok:
            reply.ReferencedSOPSequence = ok
        if failed:
            reply.FailedSOPSequence = failed
        status = 200 if not failed else (202 if ok else 409)
        return StowResult(status, reply.to_json_dict())
