"""Pixel work for uploaded images: decode, window, resize, write the pixel cache; an image whose work
keeps killing its worker ends `rejected: worker_crash` and the queue moves on."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from platform_core import tasks
from platform_core.datasets import ingest
from platform_core.datasets.ingest import PixelJob, PixelResult
from platform_core.db import attempts, outbox
from platform_core.db.session import unit_of_work
from platform_core.dicom.read import Caps
from worker import faults
from worker.app import celery_app, dispatcher
from worker.context import WorkerContext, context

log = logging.getLogger("medtune.worker")

KIND = "pixels"
# An unexpected exception in one image's pixel work (a decoder bug, not a refused file).
PROCESSING_ERROR = "processing_error"


# An upload is one transaction that lasts as long as its body takes to stream in; on SQLite it holds
# the write lock that long, which can outlast the busy timeout here. The task is idempotent: retry.
@celery_app.task(
    name=tasks.PROCESS_IMAGE.name,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=10,
)
def process_image(*image_ids: str) -> list[str | None]:
    """One message carries a chunk of image ids (platform_core.datasets.ingest.TASK_CHUNK).

    Read, then work with no transaction open, then a short write-first transaction: on SQLite a
    read snapshot held across the pixel work could not be upgraded to a write once the API commits.
    A chunk whose earlier delivery died goes back as one message per image, so one poison image
    does not take its neighbours down with it; an image that died max_task_attempts times is rejected.
    """
    ctx = context()
    with unit_of_work(ctx.sessions) as session:
        jobs = ingest.pending_pixels(session, image_ids)
        pending = [j for j in jobs.values() if j.pending]
        died = attempts.counts(session, _keys(pending))
    if len(pending) > 1 and any(died.values()):
        _one_message_each(ctx, pending)
        return [None] * len(image_ids)
    if pending and ctx.gave_up(max(died.values())):
        results = [_rejected(j, attempts.WORKER_CRASH) for j in pending]
        log.error("image %s killed its worker %d times: rejected", pending[0].image_id, max(died.values()))
    else:
        built = _work(ctx, pending)
        if built is None:
            return [None] * len(image_ids)
        results = built
    with unit_of_work(ctx.sessions) as session:
        statuses = ingest.record_pixels(session, results)
        attempts.clear(session, _keys(pending))
        leftovers = ingest.leftovers(session, results, statuses)
    for key in leftovers:
        ctx.store.delete(key)
    return [statuses.get(i, jobs[i].status if i in jobs else None) for i in image_ids]


def _work(ctx: WorkerContext, pending: list[PixelJob]) -> list[PixelResult] | None:
    """Count the delivery, build the caches; None when the chunk went back one image per message."""
    keys = _keys(pending)
    with unit_of_work(ctx.sessions) as session:
        attempts.begin(session, keys)
    try:
        faults.crash_at(*(j.image_id for j in pending))
        return _build(ctx, pending)
    except OperationalError:
        _undo(ctx, keys)  # the database, not the image: retried, and not counted against it
        raise
    except Exception:
        log.exception("pixel work failed for %s", ", ".join(j.image_id for j in pending))
        _undo(ctx, keys)
        if len(pending) > 1:
            _one_message_each(ctx, pending)
            return None
        return [_rejected(pending[0], PROCESSING_ERROR)]


def _build(ctx: WorkerContext, pending: list[PixelJob]) -> list[PixelResult]:
    return ingest.build_caches(
        ctx.store, pending, secret=ctx.settings.resolved_secret(), caps=Caps.of(ctx.settings)
    )


def _rejected(job: PixelJob, reason: str) -> PixelResult:
    return PixelResult(job.image_id, "rejected", reason, delete_key=job.dicom_key)


def _one_message_each(ctx: WorkerContext, pending: list[PixelJob]) -> None:
    with unit_of_work(ctx.sessions, dispatcher(celery_app)) as session:
        for job in pending:
            outbox.enqueue(session, tasks.PROCESS_IMAGE, job.image_id)


def _undo(ctx: WorkerContext, keys: Sequence[str]) -> None:
    try:
        with unit_of_work(ctx.sessions) as session:
            attempts.undo(session, keys)
    except OperationalError:
        log.warning("could not take back the delivery count of %s", ", ".join(keys))


def _keys(pending: Sequence[PixelJob]) -> list[str]:
    return [attempts.key(KIND, j.image_id) for j in pending]
