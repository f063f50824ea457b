"""The DICOM listener (pynetdicom): C-ECHO, and C-STORE into the dataset named by the called AE title.

Callers are checked at association: a calling AE title and host not in `dicom_allowed_callers`, or a
called AE title that is neither the platform's own nor a dataset's, is rejected there. Each instance
goes through the upload path (platform_core.datasets.ingest.Ingestor: de-identification in memory,
filters, reasons, pixel cache) and is committed before the next one is read from the network, so no
transaction waits on a peer. Stores to the platform's own AE title are the sub-operations of an
import's C-MOVE: the MoveOriginatorMessageID names the import, which names the dataset.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import AE, evt
from pynetdicom._globals import ALL_TRANSFER_SYNTAXES
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy.orm import Session, sessionmaker

from platform_core.config import Settings
from platform_core.datasets import repository as datasets
from platform_core.datasets.ingest import Ingestor, Outcome
from platform_core.datasets.models import Dataset
from platform_core.db import outbox
from platform_core.db.session import committer
from platform_core.dicom.deid import key_hmac
from platform_core.dicom.read import Caps, header
from platform_core.ids import new_id
from platform_core.pacs import inference, repository
from platform_core.pacs.models import DicomAssociation
from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.dicom")

SUCCESS = 0x0000
# C-STORE failure statuses (PS3.4 Table B.2-1): out of resources; cannot understand.
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
# A-ASSOCIATE-RJ: rejected permanent, by the service user, calling / called AE title not recognised.
REJECT_CALLING = (0x01, 0x01, 0x03)
REJECT_CALLED = (0x01, 0x01, 0x07)


def allowed(rules: list[str], calling_ae: str, host: str) -> bool:
    """Entries are "AE", "AE@host", "*@host" or "*"; an empty list allows no one."""
    for rule in rules:
        ae, _, rule_host = rule.strip().partition("@")
        if ae in ("*", calling_ae) and rule_host in ("", host):
            return True
    return False


@dataclass
class AssocState:
    """One association's state: its session, an Ingestor per dataset, and what it records."""

    session: Session
    commit: Callable[[], None]
    calling_ae: str
    called_ae: str
    association_id: str | None = None
    ingestors: dict[str, Ingestor] = field(default_factory=dict)
    target: inference.Target | None = None  # a model version's AE title: predicted, answered with an SR
    answers: list[inference.Answer] = field(default_factory=list)


class Listener:
    """A storage and verification SCP over the platform's database, object store and task dispatch."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        store: ObjectStore,
        dispatch: outbox.Dispatch,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.dispatch = dispatch
        self.secret = settings.resolved_secret()
        self.caps = Caps.of(settings)
        self.open: dict[int, AssocState] = {}
        self.lock = threading.Lock()
        self.server: Any = None

    def application_entity(self) -> AE:
        ae = AE(ae_title=self.settings.dicom_ae_title)
        ae.require_called_aet = False  # checked in _requested: a dataset's title is a called AE too
        for cx in AllStoragePresentationContexts:
            assert cx.abstract_syntax is not None
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_associations = 16
        return ae

    def start(self, host: str | None = None, port: int | None = None) -> Any:
        """Serve in background threads; returns the server (shutdown() stops it)."""
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_ACCEPTED, self._accepted),
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_RELEASED, self._ended),
            (evt.EVT_ABORTED, self._ended),
            (evt.EVT_CONN_CLOSE, self._ended),
        ]
        address = (host or self.settings.dicom_host, port or self.settings.dicom_port)
        self.server = self.application_entity().start_server(address, block=False, evt_handlers=handlers)
        log.info("DICOM listener %s on %s:%d", self.settings.dicom_ae_title, *address)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    # --- association -------------------------------------------------------------------------

    def _requested(self, event: Any) -> None:
        rq = event.assoc.requestor.primitive
        calling, called, host = (
            rq.calling_ae_title.strip(),
            rq.called_ae_title.strip(),
            event.assoc.requestor.address,
        )
        if not allowed(self.settings.dicom_allowed_callers, calling, host):
            log.warning("association refused: calling AE %s from %s is not allowed", calling, host)
            _reject(event.assoc, REJECT_CALLING)
        elif not self._known_called(called):
            log.warning("association refused: no dataset has the AE title %s", called)
            _reject(event.assoc, REJECT_CALLED)

    def _known_called(self, called: str) -> bool:
        if called == self.settings.dicom_ae_title:
            return True
        with self.sessions() as session:
            return (
                datasets.dataset_by_ae(session, called) is not None
                or inference.target_by_ae(session, called) is not None
            )

    def _accepted(self, event: Any) -> None:
        rq = event.assoc.requestor.primitive
        session = self.sessions()
        state = AssocState(session, committer(session, self.dispatch), rq.calling_ae_title.strip(),
                         rq.called_ae_title.strip())  # fmt: skip
        if state.called_ae != self.settings.dicom_ae_title:
            dataset = datasets.dataset_by_ae(session, state.called_ae)
            state.target = None if dataset is not None else inference.target_by_ae(session, state.called_ae)
            if dataset is not None:
                state.association_id = new_id("as")
                row = DicomAssociation(
                    id=state.association_id, dataset_id=dataset.id, calling_ae_title=state.calling_ae[:16]
                )
                session.add(row)
                state.ingestors[dataset.id] = self._ingestor(state, dataset)
            state.commit()
        with self.lock:
            self.open[id(event.assoc)] = state

    def _ended(self, event: Any) -> None:
        with self.lock:
            state = self.open.pop(id(event.assoc), None)
        if state is None:
            return
        try:
            if state.association_id is not None:
                status = "released" if event.event is evt.EVT_RELEASED else "aborted"
                repository.end_association(state.session, state.association_id, status)
            for ingestor in state.ingestors.values():
                ingestor.finish()
            if state.target is not None and state.answers:
                inference.deliver(state.session, self.settings, state.target, state.calling_ae, state.answers)
            state.commit()
        finally:
            for ingestor in state.ingestors.values():
                ingestor.__exit__(None, None, None)
            state.session.close()

    # --- services ----------------------------------------------------------------------------

    def _echo(self, event: Any) -> int:
        return SUCCESS

    def _store(self, event: Any) -> int:
        with self.lock:
            state = self.open.get(id(event.assoc))
        if state is None:
            return OUT_OF_RESOURCES
        try:
            data = event.encoded_dataset(include_meta=True)  # identified bytes: in memory only
            return self._ingest(state, event.request, data)
        except Exception:
            log.exception("C-STORE failed")
            state.session.rollback()
            return OUT_OF_RESOURCES

    def _ingest(self, state: AssocState, request: Any, data: bytes) -> int:
        """One instance through the upload path, committed with its counts before the next is read
        (or, sent to a model's AE title, predicted in memory: its SR goes back when the association ends)."""
        if state.target is not None:
            state.answers.append(inference.answer(self.settings, self.store, self.secret, state.target, data))
            return SUCCESS
        target = self._target(state, request)
        if target is None:
            return CANNOT_UNDERSTAND
        dataset, import_id, key_type = target
        ingestor = state.ingestors.get(dataset.id) or self._ingestor(state, dataset)
        state.ingestors[dataset.id] = ingestor
        key = _study_key(data, key_type) if import_id else None
        outcome = ingestor.dicom(data)
        counts = _counts(outcome)
        if state.association_id is not None:
            repository.add_association_counts(state.session, state.association_id, received=1, **counts)
        if import_id is not None and key is not None:
            repository.add_to_study(
                state.session, import_id, key_hmac(self.secret, key), instances=1, **counts
            )
        ingestor.checkpoint()
        return SUCCESS

    def _target(self, state: AssocState, request: Any) -> tuple[Dataset, str | None, str] | None:
        """The dataset this store goes to (and the import it belongs to, for a C-MOVE sub-operation)."""
        if state.called_ae != self.settings.dicom_ae_title:
            ingestor = next(iter(state.ingestors.values()), None)
            return (ingestor.dataset, None, "") if ingestor is not None else None
        message_id = getattr(request, "MoveOriginatorMessageID", None)
        if message_id is None:
            return None
        found = repository.moving_import(state.session, int(message_id))
        if found is None:
            return None
        dataset = datasets.find_dataset(state.session, found.dataset_id)
        return (dataset, found.id, found.key_type) if dataset is not None else None

    def _ingestor(self, state: AssocState, dataset: Dataset) -> Ingestor:
        return Ingestor(state.session, self.store, self.secret, dataset, state.commit, self.caps)


def _reject(assoc: Any, reason: tuple[int, int, int]) -> None:
    """A-ASSOCIATE-RJ, then wait (as pynetdicom's own rejections do) until it has gone out."""
    assoc.acse.send_reject(*reason)
    evt.trigger(assoc, evt.EVT_REJECTED, {})
    assoc.kill()


def _counts(outcome: Outcome) -> dict[str, int]:
    return {
        "queued": int(outcome.outcome == "queued"),
        "duplicates": int(outcome.outcome == "duplicate"),
        "rejected": int(outcome.outcome == "rejected"),
    }


def _study_key(data: bytes, key_type: str) -> str | None:
    """The import's original key of this instance (StudyInstanceUID or AccessionNumber), header only."""
    try:
        # read.header inflates at most a header's worth of a deflated body: a bomb costs nothing here.
        ds = header(io.BytesIO(data), [key_type])
    except Exception:
        return None
    value = str(ds.get(key_type, "") or "").strip()
    return value or None


def serve(
    settings: Settings, dispatch: outbox.Dispatch, host: str | None = None, port: int | None = None
) -> None:
    """The listener as a process (`medtune dicom`): serve until SIGTERM or SIGINT."""
    import signal

    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.storage import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(settings.db_url)
    store = open_store(settings.object_store_url or "", settings)
    listener = Listener(settings, make_sessionmaker(engine), store, dispatch)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    listener.start(host, port)
    try:
        stop.wait()
    finally:
        listener.stop()
        engine.dispose()
