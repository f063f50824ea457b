"""PACS nodes (secrets sealed with the deployment key, never returned), imports by query (created
here, run by platform_core.pacs.imports on the ingest queue), cancel, and the listener's associations."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from platform_core.datasets import labels
from platform_core.datasets.models import Dataset
from platform_core.datasets.schemas import LabelImport
from platform_core.db import outbox
from platform_core.db.base import utcnow
from platform_core.dicom.deid import key_hmac
from platform_core.errors import Conflict, Invalid, NotFound
from platform_core.ids import new_id
from platform_core.pacs import crypto, repository, titles
from platform_core.pacs.models import PacsImport, PacsImportStudy, PacsNode
from platform_core.pacs.schemas import (
    ImportCreate,
    PacsNodeCreate,
)
from platform_core.tasks import PACS_IMPORT

TASK = PACS_IMPORT
LABELS_BYTES = 64 * 1024 * 1024
TERMINAL = ("succeeded", "failed", "cancelled")


# --- nodes ------------------------------------------------------------------------------------


def create_node(session: Session, secret: str, project_id: str, body: PacsNodeCreate) -> PacsNode:
    if repository.node_named(session, project_id, body.name) is not None:
        raise Conflict(f"a PACS node named '{body.name}' exists", param="name")
    auth = body.auth.model_dump(exclude={"type"}, exclude_none=True)
    node = PacsNode(
        id=new_id("pn"), project_id=project_id, name=body.name, kind=body.kind, url=body.url,
        host=body.host, port=body.port, ae_title=body.ae_title, auth_type=body.auth.type,
        auth_secret=crypto.seal(secret, auth) if auth else None,
    )  # fmt: skip
    session.add(node)
    session.flush()
    return node


def get_node(session: Session, project_id: str, node_id: str) -> PacsNode:
    node = repository.get_node(session, project_id, node_id)
    if node is None:
        raise NotFound(f"no PACS node '{node_id}'", param="node_id")
    return node


def delete_node(session: Session, project_id: str, node_id: str) -> None:
    session.delete(get_node(session, project_id, node_id))
    session.flush()


def node_auth(secret: str, node: PacsNode) -> dict[str, str]:
    """The node's credentials, decrypted for the import that uses them (never stored elsewhere)."""
    if node.auth_secret is None:
        return {}
    auth: dict[str, str] = crypto.open_sealed(secret, node.auth_secret)
    return auth


# --- inference AE titles ----------------------------------------------------------------------


def bind_inference_ae(
    session: Session,
    project_id: str,
    name: str,
    number: int,
    ae_title: str | None,
    listener_ae_title: str | None = None,
) -> Any:
    """A model version answers studies C-STOREd to `ae_title` with an SR (platform_core.pacs.inference);
    the listener's own title (`listener_ae_title`) is refused."""
    from platform_core.registry import repository as registry

    version = registry.version_by_number(session, registry.get_model(session, project_id, name), number)
    title = ae_title.strip() if ae_title is not None else None
    if title is not None and title != version.dicom_ae_title:
        title = titles.free_title(session, title, listener_ae_title, "ae_title")
    with titles.claim(session, title, "ae_title"):
        version.dicom_ae_title = title
    return version


# --- imports ----------------------------------------------------------------------------------


def create_import(
    session: Session, secret: str, dataset: Dataset, body: ImportCreate, labels_csv: bytes | None = None
) -> tuple[PacsImport, LabelImport | None]:
    """Record the import and its studies (HMACs), seal the original keys, queue the task (after commit).
    A labels CSV imports its labels here and names the studies by its key column."""
    node = get_node(session, dataset.project_id, body.node_id)
    label_result = None
    if labels_csv is not None:
        label_result = labels.import_labels(session, secret, dataset, labels_csv)
        key_type, keys = csv_keys(labels_csv)
    elif body.study_instance_uids is not None:
        key_type, keys = "StudyInstanceUID", body.study_instance_uids
    else:
        key_type, keys = "AccessionNumber", body.accession_numbers or []
    keys = unique_keys(keys)
    if not keys:
        raise Invalid("the query names no study", param="study_instance_uids")
    imp = PacsImport(
        id=new_id("imp"), project_id=dataset.project_id, dataset_id=dataset.id, node_id=node.id,
        key_type=key_type, status="queued", keys_encrypted=crypto.seal(secret, keys), studies_total=len(keys),
    )  # fmt: skip
    session.add(imp)
    session.flush()
    for position, key in enumerate(keys):
        study = PacsImportStudy(import_id=imp.id, key_hmac=key_hmac(secret, key), position=position,
                                status="pending", instances=0, queued=0, duplicates=0,
                                rejected=0)  # fmt: skip
        session.add(study)
    session.flush()
    outbox.enqueue(session, TASK, imp.id)
    return imp, label_result


def unique_keys(keys: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for key in keys:
        if key.strip():
            seen.setdefault(key.strip(), None)
    return list(seen)


def csv_keys(data: bytes) -> tuple[str, list[str]]:
    """The key column's values of a labels CSV (already validated by labels.import_labels)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    header = [h.strip() for h in next(reader, [])]
    column = next(c for c in header if c in labels.KEY_COLUMNS)
    index = header.index(column)
    return column, [row[index] for row in reader if index < len(row) and row[index].strip()]


def get_import(session: Session, project_id: str, import_id: str) -> PacsImport:
    imp = repository.get_import(session, project_id, import_id)
    if imp is None:
        raise NotFound(f"no import '{import_id}'", param="import_id")
    return imp


def cancel_import(session: Session, imp: PacsImport) -> PacsImport:
    """Ends a queued or running import (the runner stops before its next study); the keys go now."""
    if imp.status not in TERMINAL:
        imp.status = "cancelled"
        imp.keys_encrypted = None
        imp.finished_at = utcnow()
        session.flush()
    return imp


def requeue_stale(session: Session, stale_after_s: float) -> list[str]:
    """For the beat: imports whose runner stopped beating (a worker that died, a restart) go again."""
    ids = list(repository.stale_imports(session, utcnow() - timedelta(seconds=stale_after_s)))
    for import_id in ids:
        outbox.enqueue(session, TASK, import_id)
    return ids
