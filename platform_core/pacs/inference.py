"""Inference from the PACS: a study C-STOREd to a model version's AE title is predicted in memory and
the answer goes back to the sending PACS as a DICOM SR, with the Grad-CAM overlay as a Secondary
Capture (platform_core.pacs.sr).

This path keeps the original UIDs (the SR must reference the study it answers) and so stores nothing
of the instance: it is parsed, predicted and answered in memory. The only record is an audit event
with the study's key HMAC, the model and the outcome. The SR goes to the project's DIMSE node whose AE
title is the calling AE title (its host and port are the PACS's C-STORE SCP).
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    SecondaryCaptureImageStorage,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from platform_core.artifacts import ModelManifest
from platform_core.auth import repository as audit
from platform_core.config import Settings
from platform_core.dicom.deid import key_hmac
from platform_core.dicom.read import Caps, Rejected, parse
from platform_core.pacs import sr
from platform_core.pacs.models import PacsNode
from platform_core.registry import repository as registry
from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.dicom")
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Target:
    version_id: str
    project_id: str
    model: str  # name:number
    manifest: ModelManifest


@dataclass
class Answer:
    """One instance's SR, held in memory until the association ends."""

    study_key_hmac: str
    sr: bytes | None
    outcome: str  # predicted | rejected: <reason> | failed
    heatmap: bytes | None = None  # a Secondary Capture of the Grad-CAM overlay


def target_by_ae(session: Session, ae_title: str) -> Target | None:
    row = registry.ready_by_ae_title(session, ae_title.strip())
    if row is None:
        return None
    version, name = row
    return Target(version.id, version.project_id, f"{name}:{version.number}", version.model_manifest)


def answer(settings: Settings, store: ObjectStore, secret: str, target: Target, data: bytes) -> Answer:
    """Predict one instance and build its SR, all in memory."""
    from platform_core.inference import serving

    try:
        source = parse(data, Caps.of(settings)).dataset
    except Rejected as exc:
        return Answer("", None, f"rejected: {exc.reason}")
    study_hmac = key_hmac(secret, str(source.get("StudyInstanceUID", "")))
    try:
        prediction = serving.predict(settings, store, target.manifest, [data], explain=True)[0]
    except Rejected as exc:
        return Answer(study_hmac, None, f"rejected: {exc.reason}")
    except Exception:
        log.exception("prediction failed for %s", target.model)
        return Answer(study_hmac, None, "failed")
    overlay = base64.b64decode(prediction.pop("heatmap_png_base64"))
    report = sr.build(source, target.model, prediction)
    return Answer(study_hmac, report, "predicted", sr.heatmap(source, target.model, overlay))


def destination(session: Session, project_id: str, calling_ae: str) -> PacsNode | None:
    return session.scalar(
        select(PacsNode).where(
            PacsNode.project_id == project_id,
            PacsNode.kind == "dimse",
            PacsNode.ae_title == calling_ae.strip(),
        )
    )


def send(settings: Settings, node: PacsNode, objects: list[bytes]) -> bool:
    """C-STORE the SR (and heatmap) to the node over one association; True when it took every one."""
    ae = AE(ae_title=settings.dicom_ae_title)
    ae.add_requested_context(Comprehensive3DSRStorage)
    ae.add_requested_context(SecondaryCaptureImageStorage)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    assert node.host and node.port and node.ae_title
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        return False
    try:
        statuses = [assoc.send_c_store(dcmread(io.BytesIO(data))) for data in objects]
        return all(bool(s) and s.Status == 0x0000 for s in statuses)
    finally:
        assoc.release()


def deliver(
    session: Session, settings: Settings, target: Target, calling_ae: str, answers: list[Answer]
) -> None:
    """Send each SR to the caller's node and record one audit event per instance (pseudonyms only)."""
    node = destination(session, target.project_id, calling_ae)
    for a in answers:
        outcome = a.outcome
        if a.sr is not None:
            objects = [a.sr] if a.heatmap is None else [a.sr, a.heatmap]
            outcome = "sent" if node is not None and send(settings, node, objects) else "not_sent"
        details = {"study_key_hmac": a.study_key_hmac, "model": target.model, "outcome": outcome}
        audit.add_audit_event(
            session, target.project_id, "pacs.inference", "model_version", target.version_id, details=details
        )
    session.flush()
