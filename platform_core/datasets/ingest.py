"""One file through the pipeline in the API process: parse, filter, de-identify in memory, store, record.

Identified bytes exist only in the caller's memory (or its private spool file); what reaches the
object store and the database is already de-identified. An Ingestor carries what one upload request
shares across its files (options, filters, the de-identifier, studies already seen) and queues the
pixel work in chunks once the files are recorded. The worker's side of that work reads and records
here (pending_pixels, record_pixels, leftovers) and builds the caches in between, outside any
transaction (platform_core.datasets.pixel_caches; its names are re-exported here).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy.orm import Session

from platform_core.datasets import deid_report, repository
from platform_core.datasets.models import Dataset
from platform_core.datasets.pixel_caches import PixelJob as PixelJob
from platform_core.datasets.pixel_caches import PixelResult as PixelResult
from platform_core.datasets.pixel_caches import Puts as Puts
from platform_core.datasets.pixel_caches import build_caches as build_caches
from platform_core.datasets.schemas import DatasetOptions
from platform_core.db import outbox
from platform_core.dicom import burned_in
from platform_core.dicom.deid import Deidentifier
from platform_core.dicom.read import DEFAULT_CAPS, Caps, Rejected, parse
from platform_core.dicom.validate import Filters, check
from platform_core.ids import new_id
from platform_core.storage import ObjectStore
from platform_core.tasks import PROCESS_IMAGE

TASK = PROCESS_IMAGE
DICOM_TYPE = "application/dicom"
PREAMBLE = b"\x00" * 128
log = logging.getLogger("medtune.ingest")
# Image ids per pixel task: one message and one worker commit per chunk instead of per image, while
# a big upload still spreads over many workers.
TASK_CHUNK = 32
# A request that commits as it goes (checkpoint(hold_tasks=True)) sends full chunks at each commit; the
# images left over wait for a later commit, and go with the first one after they have waited this long.
HOLD_TASKS_S = 2.0


@dataclass(frozen=True)
class Outcome:
    outcome: str  # queued | duplicate | rejected
    reason: str | None = None
    image_id: str | None = None
    message: str | None = None  # which limit a too_large file broke


def options_of(dataset: Dataset) -> DatasetOptions:
    return DatasetOptions.model_validate(dataset.options)


def filters_of(opts: DatasetOptions) -> Filters:
    return Filters(opts.min_image_size, frozenset(opts.modalities), opts.burned_in_annotation)


def deidentifier(secret: str, opts: DatasetOptions) -> Deidentifier:
    return Deidentifier(secret, deid_report.deid_options(opts))


class Ingestor:
    """Files into one dataset within the caller's transaction; finish() before it commits.

    A caller that reads its files from the network passes `commit` (the transport's commit) and calls
    checkpoint() before each read, so no transaction stays open while it waits on a client. Use it as
    a context manager so its writer threads end with the request, error or not.
    """

    def __init__(
        self,
        session: Session,
        store: ObjectStore,
        secret: str,
        dataset: Dataset,
        commit: Callable[[], None] | None = None,
        caps: Caps = DEFAULT_CAPS,
    ) -> None:
        self.session = session
        self.caps = caps
        self.commit = commit
        self.store = store
        self.secret = secret
        self.dataset = dataset
        self.opts = options_of(dataset)
        self.filters = filters_of(self.opts)
        self.deid = deidentifier(secret, self.opts)
        self.studies: dict[str, str] = {}  # study_key_hmac -> study id
        self.queued: list[str] = []
        self.duplicates = 0
        self.puts = Puts(store)
        self.tally = deid_report.Tally()  # what de-identification did, added to the dataset's in finish()
        self.stored: list[str] = []  # keys this transaction wrote: removed again if it fails
        self.unsent: list[str] = []  # images an earlier commit recorded whose task waits for a full chunk
        self.unsent_since = 0.0

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is not None:
                self.discard()
                self._send_unsent()
        finally:
            self.puts.close()

    def discard(self) -> None:
        """The transaction is failing (a bad manifest, a body over the limit, a dropped client...): take
        back the objects it stored. Done before its rollback, so a concurrent upload of the same
        instance, waiting on our row's unique key, only stores its copy after these deletes."""
        self.puts.settle()
        for key in self.stored:
            with contextlib.suppress(Exception):  # best effort: an orphan holds de-identified bytes only
                self.store.delete(key)
        self.stored.clear()

    def checkpoint(self, hold_tasks: bool = False) -> None:
        """Commit what is recorded so far (with `commit`; without it, nothing): its objects then stay,
        whatever becomes of the rest of the request. On SQLite the next file's first write takes the
        write lock again (writers begin IMMEDIATE), so other writers wait one file at most.

        hold_tasks: send only full chunks of pixel tasks now (a task per image costs the worker more
        than the image does), the rest with a later commit, HOLD_TASKS_S after at most, or finish()."""
        if self.commit is None:
            return
        rest = self._settle(hold_tasks)
        self.commit()
        if rest[:1] != self.unsent[:1]:  # the longest-waiting image changed: its clock starts now
            self.unsent_since = time.monotonic()
        self.unsent = rest
        self.stored.clear()

    def _send_unsent(self) -> None:
        """The request is failing: roll back its open part now (as the transport is about to), then
        commit the tasks of the images earlier commits recorded, so none stays queued without one."""
        if not self.unsent or self.commit is None:
            return
        try:
            self.session.rollback()
            self.queued = []
            self._queue_tasks(hold=False)
            self.unsent = []
            self.commit()
        except Exception:  # best effort: the request's own error is the one to report
            log.warning("sending the pixel tasks of %d images failed", len(self.unsent), exc_info=True)

    def reject(self, reason: str, source: str = "dicom", message: str | None = None) -> Outcome:
        image_id = new_id("img")
        repository.insert_image_row(
            self.session,
            id=image_id,
            dataset_id=self.dataset.id,
            source=source,
            status="rejected",
            reason=reason,
        )
        return Outcome("rejected", reason, image_id, message)

    def study(self, study_key_hmac: str, **values: Any) -> str:
        found = self.studies.get(study_key_hmac)
        if found is None:
            found = repository.ensure_study(self.session, self.dataset.id, study_key_hmac, **values)
            self.studies[study_key_hmac] = found
        return found

    def add(self, key: str, data: bytes, content_type: str, **row: Any) -> Outcome:
        """Record the image (the unique constraint decides duplicates), then store its bytes."""
        image_id = new_id("img")
        if not repository.insert_image_row(
            self.session,
            id=image_id,
            dataset_id=self.dataset.id,
            status="queued",
            dicom_key=key,
            size_bytes=len(data),
            **row,
        ):
            self.duplicates += 1
            return Outcome("duplicate")
        # The key derives from the pseudonymous instance UID: a retried upload rewrites the same object.
        self.stored.append(key)
        self.puts.put(key, data, content_type)
        self.queued.append(image_id)
        return Outcome("queued", None, image_id)

    def dicom(self, data: bytes) -> Outcome:
        """Parse once, filter, de-identify that same Dataset in place, write it once."""
        try:
            ds = parse(data, self.caps).dataset
            check(ds, self.filters)
            screen = self.screen_hashes(ds)  # the header's own values, read before they are removed
            result = self.deid(ds)
        except Rejected as exc:
            return self.reject(exc.reason, message=exc.detail)
        if not result.sop_instance_uid_pseudonym or not result.study_pseudonym:
            return self.reject("corrupt")
        buf = io.BytesIO()
        ds.preamble = PREAMBLE  # the preamble is free-form bytes: it may carry anything
        try:
            ds.save_as(buf, enforce_file_format=True)
            rows, columns = int(ds.Rows), int(ds.Columns)
        except Exception:
            return self.reject("corrupt")
        study_id = self.study(
            result.study_key_hmac,
            accession_hmac=result.accession_hmac,
            study_pseudonym=result.study_pseudonym,
            patient_pseudonym=result.patient_pseudonym,
            sex=result.sex,
            age_years=result.age_years,
        )
        outcome = self.add(
            f"datasets/{self.dataset.id}/dicom/{result.sop_instance_uid_pseudonym}.dcm",
            buf.getvalue(),
            DICOM_TYPE,
            study_id=study_id,
            study_pseudonym=result.study_pseudonym,
            patient_pseudonym=result.patient_pseudonym,
            sop_instance_uid_pseudonym=result.sop_instance_uid_pseudonym,
            source="dicom",
            rows=rows,
            columns=columns,
            modality=_short(ds.get("Modality"), 16),
            body_part=_short(ds.get("BodyPartExamined"), 64),
            view_position=_short(ds.get("ViewPosition"), 16),
            screen_hashes=screen,
        )
        if outcome.outcome == "queued":
            self.tally.add(result)
        return outcome

    def screen_hashes(self, ds: Any) -> list[str] | None:
        """Keyed hashes of the identifying words the worker's burned-in text screen looks for."""
        if self.opts.burned_in_text == "off":
            return None
        return burned_in.header_hashes(self.secret, ds) or None

    def finish(self) -> None:
        """Wait for the objects, count duplicates, queue the pixel work (sent after the commit)."""
        self._settle(hold=False)
        self.unsent = []

    def _settle(self, hold: bool) -> list[str]:
        self.puts.wait()
        self.tally.flush(self.session, self.dataset.id)
        if self.duplicates:
            repository.add_duplicates(self.session, self.dataset.id, self.duplicates)
            self.duplicates = 0
        rest = self._queue_tasks(hold)
        self.session.flush()
        return rest

    def _queue_tasks(self, hold: bool) -> list[str]:
        """Pixel tasks for the images recorded and not yet queued, in chunks; with hold, a last short
        chunk is returned instead (unless its oldest images have waited HOLD_TASKS_S)."""
        ids = self.unsent + self.queued
        overdue = bool(self.unsent) and time.monotonic() - self.unsent_since >= HOLD_TASKS_S
        end = len(ids) - len(ids) % TASK_CHUNK if hold and not overdue else len(ids)
        for i in range(0, end, TASK_CHUNK):
            outbox.enqueue(self.session, TASK, *ids[i : i + TASK_CHUNK])
        self.queued = []
        return ids[end:]


def ingest_dicom(session: Session, store: ObjectStore, secret: str, dataset: Dataset, data: bytes) -> Outcome:
    """One DICOM file on its own (uploads of many files share an Ingestor instead)."""
    with Ingestor(session, store, secret, dataset) as ingestor:
        outcome = ingestor.dicom(data)
        ingestor.finish()
    return outcome


def _short(value: object, n: int) -> str | None:
    text = str(value or "").strip()
    return text[:n] or None


def process_image(session: Session, store: ObjectStore, image_id: str, *, secret: str) -> str | None:
    """Worker side for one image in the caller's transaction; see process_images."""
    return process_images(session, store, [image_id], secret=secret)[0]


def process_images(
    session: Session, store: ObjectStore, image_ids: Sequence[str], *, secret: str
) -> list[str | None]:
    """pending_pixels, build_caches and record_pixels in the caller's transaction; returns statuses."""
    jobs = pending_pixels(session, image_ids)
    done = {r.image_id: r for r in build_caches(store, jobs.values(), secret=secret)}
    statuses = record_pixels(session, done.values())
    for key in leftovers(session, done.values(), statuses):
        store.delete(key)
    return [statuses.get(i, jobs[i].status if i in jobs else None) for i in image_ids]


def pending_pixels(session: Session, image_ids: Sequence[str]) -> dict[str, PixelJob]:
    """What the pixel work needs, read in one query, as plain values (no open rows to hold)."""
    images = repository.images_by_id(session, image_ids)
    sizes: dict[str, int] = {}
    jobs: dict[str, PixelJob] = {}
    for image in images.values():
        if image.dataset_id not in sizes:
            dataset = session.get(Dataset, image.dataset_id)
            assert dataset is not None
            sizes[image.dataset_id] = options_of(dataset).cache_size
        jobs[image.id] = PixelJob(
            image_id=image.id,
            dataset_id=image.dataset_id,
            source=image.source,
            status=image.status,
            dicom_key=image.dicom_key,
            cache_size=sizes[image.dataset_id],
            screen=tuple(image.screen_hashes or ()),
        )
    return jobs


def record_pixels(session: Session, results: Iterable[PixelResult]) -> dict[str, str]:
    """Write-first (SQLite upgrades no read snapshot) and only over still-queued rows: idempotent."""
    statuses: dict[str, str] = {}
    for r in results:
        if repository.finish_image(session, r.image_id, r.status, r.reason, r.cache_key, r.pixel_sha256):
            statuses[r.image_id] = r.status
    session.flush()
    return statuses


def leftovers(session: Session, results: Iterable[PixelResult], statuses: dict[str, str]) -> list[str]:
    """Objects to remove once the outcomes are recorded: a rejected image's file, and what was built for
    an image erased meanwhile (its row is gone, so nothing else would ever remove its cache)."""
    results = list(results)
    unrecorded = [r.image_id for r in results if r.image_id not in statuses]
    present = repository.images_by_id(session, unrecorded) if unrecorded else {}
    keys: list[str] = []
    for r in results:
        erased = r.image_id not in statuses and r.image_id not in present
        if r.delete_key and (r.image_id in statuses or erased):
            keys.append(r.delete_key)
        if r.cache_key and erased:
            keys.append(r.cache_key)
    return keys
