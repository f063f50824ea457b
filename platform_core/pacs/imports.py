"""Running an import: claim it, open its sealed keys (in memory only while it runs), then study by
study find, retrieve and ingest through the upload path, recording each study's outcome by HMAC.

Resumable: a study is marked done in the transaction that records its last instance, and a
re-delivered or re-sent task picks up at the first study still pending (an instance that arrives
twice is a duplicate, never a second image). The keys are deleted when the import ends.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from platform_core.config import Settings
from platform_core.datasets import repository as datasets
from platform_core.datasets.ingest import Ingestor
from platform_core.datasets.parts import Part
from platform_core.db import outbox
from platform_core.db.base import utcnow
from platform_core.db.session import committer, unit_of_work
from platform_core.dicom.deid import key_hmac
from platform_core.dicom.read import Caps
from platform_core.pacs import crypto, repository, service
from platform_core.pacs.models import PacsImport, PacsNode
from platform_core.pacs.sources import DicomWeb, Dimse, SourceError
from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.pacs")


@dataclass
class ImportRun:
    """What one delivery of the import task works with."""

    settings: Settings
    sessions: sessionmaker[Session]
    store: ObjectStore
    dispatch: outbox.Dispatch
    import_id: str
    runner: str
    # Called with each study's key HMAC before its work (worker/faults.py's crash hook in tests).
    before_study: Callable[[str], None] = lambda _key: None
    secret: str = field(init=False)

    def __post_init__(self) -> None:
        self.secret = self.settings.resolved_secret()


@dataclass
class Tally:
    instances: int = 0
    queued: int = 0
    duplicates: int = 0
    rejected: int = 0


def run_import(run: ImportRun) -> str | None:
    """The import's status when this delivery ends; None when another delivery holds it or it ended."""
    stale_before = utcnow() - timedelta(seconds=run.settings.pacs_import_stale_s)
    with unit_of_work(run.sessions) as session:
        imp = repository.claim(session, run.import_id, run.runner, stale_before)
        if imp is None or imp.keys_encrypted is None:
            return None
        keys: list[str] = crypto.open_sealed(run.secret, imp.keys_encrypted)  # in memory only from here
        node = session.get(PacsNode, imp.node_id)
        pending = [s.key_hmac for s in repository.import_studies(session, imp.id) if s.status == "pending"]
        key_type = imp.key_type
    if node is None:
        return _end(run, "failed", "the PACS node was deleted")
    by_hmac = {key_hmac(run.secret, k): k for k in keys}
    del keys
    try:
        for hmac_key in pending:
            with unit_of_work(run.sessions) as session:
                status = repository.beat(session, run.import_id, run.runner)
            if status != "running":
                return status  # cancelled, or taken over by a newer delivery
            run.before_study(hmac_key)
            _one_study(run, node, key_type, hmac_key, by_hmac[hmac_key])
    finally:
        by_hmac.clear()
    return _end(run, "succeeded", None)


def _one_study(run: ImportRun, node: PacsNode, key_type: str, hmac_key: str, key: str) -> None:
    try:
        if node.kind == "dicomweb":
            _dicomweb_study(run, node, key_type, hmac_key, key)
        else:
            _dimse_study(run, node, key_type, hmac_key, key)
    except SourceError as exc:
        log.warning("import %s: a study failed: %s", run.import_id, exc)
        with unit_of_work(run.sessions) as session:
            repository.set_study(session, run.import_id, hmac_key, status="failed", error=str(exc)[:200])


def _dicomweb_study(run: ImportRun, node: PacsNode, key_type: str, hmac_key: str, key: str) -> None:
    source = DicomWeb(node, _auth(run, node), run.settings)
    try:
        uids = source.find(key_type, key)
        if not uids:
            _not_found(run, hmac_key)
            return
        with run.sessions() as session:
            dataset = datasets.find_dataset(session, _dataset_id(session, run.import_id))
            assert dataset is not None
            commit = committer(session, run.dispatch)
            tally = Tally()
            with Ingestor(session, run.store, run.secret, dataset, commit, Caps.of(run.settings)) as ingestor:
                for uid in uids:
                    source.retrieve(
                        uid, lambda part: _ingest_part(run, ingestor, tally, part), ingestor.checkpoint
                    )
                ingestor.finish()
                repository.set_study(session, run.import_id, hmac_key, status="done", **vars(tally))
                commit()
    finally:
        source.close()


def _ingest_part(run: ImportRun, ingestor: Ingestor, tally: Tally, part: Part) -> None:
    data = part.read(run.settings.max_upload_bytes)
    outcome = ingestor.reject("too_large") if data is None else ingestor.dicom(data)
    tally.instances += 1
    tally.queued += outcome.outcome == "queued"
    tally.duplicates += outcome.outcome == "duplicate"
    tally.rejected += outcome.outcome == "rejected"


def _dimse_study(run: ImportRun, node: PacsNode, key_type: str, hmac_key: str, key: str) -> None:
    source = Dimse(node, run.settings)
    uids = source.find(key_type, key)
    if not uids:
        _not_found(run, hmac_key)
        return
    message_id = secrets.randbelow(65535) + 1
    with unit_of_work(run.sessions) as session:
        repository.beat(session, run.import_id, run.runner, move_message_id=message_id)
    failed = 0
    for uid in uids:
        # The listener commits each sub-operation before answering it, so its counts are in when this returns.
        failed += source.move(uid, message_id).failed
    with unit_of_work(run.sessions) as session:
        error = f"{failed} sub-operations failed" if failed else None
        repository.set_study(session, run.import_id, hmac_key, status="done", error=error)
        repository.beat(session, run.import_id, run.runner, move_message_id=None)


def _not_found(run: ImportRun, hmac_key: str) -> None:
    with unit_of_work(run.sessions) as session:
        repository.set_study(session, run.import_id, hmac_key, status="not_found")


def _auth(run: ImportRun, node: PacsNode) -> dict[str, str]:
    return service.node_auth(run.secret, node)


def _dataset_id(session: Session, import_id: str) -> str:
    imp = session.get(PacsImport, import_id)
    assert imp is not None
    return imp.dataset_id


def _end(run: ImportRun, status: str, error: str | None) -> str | None:
    """The import ends (unless cancelled meanwhile); its sealed keys are deleted either way."""
    with unit_of_work(run.sessions) as session:
        imp = session.get(PacsImport, run.import_id)
        if imp is None or imp.runner != run.runner:
            return None
        if imp.status == "running":
            imp.status = status
            imp.error = error
        imp.keys_encrypted = None
        imp.move_message_id = None
        imp.finished_at = imp.finished_at or utcnow()
        return imp.status
