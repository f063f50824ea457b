"""Where an import pulls from: a DICOMweb server (QIDO-RS to find, WADO-RS to retrieve, its multipart
body read part by part through the upload parser) or a DIMSE peer (C-FIND, then C-MOVE to the
platform's own AE title, whose listener ingests the sub-operations)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)
from python_multipart.multipart import parse_options_header

from platform_core.config import Settings
from platform_core.datasets import parts
from platform_core.datasets.parts import Part
from platform_core.pacs.models import PacsNode

STUDY_UID_TAG = "0020000D"
PENDING = (0xFF00, 0xFF01)
TIMEOUT_S = 60.0


class SourceError(Exception):
    """The source answered with an error, or not at all: the study fails with this message."""


@dataclass(frozen=True)
class Moved:
    completed: int
    failed: int
    warning: int


class Source(Protocol):
    def find(self, key_type: str, key: str) -> list[str]:
        """The StudyInstanceUIDs the key names (an accession may name more than one)."""
        ...


class DicomWeb:
    def __init__(self, node: PacsNode, auth: dict[str, str], settings: Settings) -> None:
        assert node.url is not None
        self.base = node.url.rstrip("/")
        self.settings = settings
        headers = {"Authorization": f"Bearer {auth['token']}"} if node.auth_type == "bearer" else {}
        basic = (auth["username"], auth["password"]) if node.auth_type == "basic" else None
        self.client = httpx.Client(headers=headers, auth=basic, timeout=TIMEOUT_S)

    def close(self) -> None:
        self.client.close()

    def find(self, key_type: str, key: str) -> list[str]:
        try:
            r = self.client.get(f"{self.base}/studies", params={key_type: key, "includefield": STUDY_UID_TAG},
                                headers={"Accept": "application/dicom+json"})  # fmt: skip
        except httpx.HTTPError as exc:
            raise SourceError(f"QIDO-RS: {exc.__class__.__name__}") from None
        if r.status_code == 204:
            return []
        if r.status_code != 200:
            raise SourceError(f"QIDO-RS answered {r.status_code}")
        found = [str(item.get(STUDY_UID_TAG, {}).get("Value", [""])[0]) for item in r.json()]
        return [uid for uid in found if uid]

    def retrieve(
        self, study_uid: str, on_part: Callable[[Part], None], on_block_end: Callable[[], None]
    ) -> None:
        """WADO-RS the study; each instance goes to on_part as soon as it has arrived (one at a time)."""
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        try:
            with self.client.stream(
                "GET", f"{self.base}/studies/{study_uid}", headers={"Accept": accept}
            ) as r:
                if r.status_code != 200:
                    raise SourceError(f"WADO-RS answered {r.status_code}")
                _kind, params = parse_options_header(r.headers.get("content-type", ""))
                boundary = params.get(b"boundary")
                if not boundary:
                    raise SourceError("WADO-RS answered without a multipart boundary")
                parts.stream_parts(boundary.strip(b'"'), r.iter_bytes(), on_part,
                                   self.settings.max_multipart_parts, on_block_end)  # fmt: skip
        except httpx.HTTPError as exc:
            raise SourceError(f"WADO-RS: {exc.__class__.__name__}") from None


class Dimse:
    def __init__(self, node: PacsNode, settings: Settings) -> None:
        assert node.host and node.port and node.ae_title
        self.node = node
        self.settings = settings

    @contextmanager
    def association(self) -> Iterator[Any]:
        ae = AE(ae_title=self.settings.dicom_ae_title)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
        assert self.node.host and self.node.port and self.node.ae_title
        assoc = ae.associate(self.node.host, self.node.port, ae_title=self.node.ae_title)
        if not assoc.is_established:
            raise SourceError(f"association with {self.node.ae_title} refused or failed")
        try:
            yield assoc
        finally:
            assoc.release()

    def find(self, key_type: str, key: str) -> list[str]:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = key if key_type == "StudyInstanceUID" else ""
        if key_type == "AccessionNumber":
            query.AccessionNumber = key
        found: list[str] = []
        with self.association() as assoc:
            for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                if not status:
                    raise SourceError("C-FIND: no answer")
                if status.Status in PENDING and identifier is not None:
                    found.append(str(identifier.get("StudyInstanceUID", "")))
                elif status.Status != 0x0000:
                    raise SourceError(f"C-FIND answered 0x{status.Status:04X}")
        return [uid for uid in found if uid]

    def move(self, study_uid: str, message_id: int) -> Moved:
        """C-MOVE the study to the platform's AE title; the listener files it under `message_id`."""
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        last: Any = None
        with self.association() as assoc:
            model = StudyRootQueryRetrieveInformationModelMove
            responses = assoc.send_c_move(query, self.settings.dicom_ae_title, model, msg_id=message_id)
            for status, _identifier in responses:
                if not status:
                    raise SourceError("C-MOVE: no answer")
                last = status
        if last is None or last.Status not in (0x0000, 0xB000):
            raise SourceError(f"C-MOVE answered 0x{getattr(last, 'Status', 0):04X}")
        counts = [
            int(last.get(f"NumberOf{k}Suboperations", 0) or 0) for k in ("Completed", "Failed", "Warning")
        ]
        return Moved(*counts)
