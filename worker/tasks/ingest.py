"""Pixel work for uploaded images: decode, window, resize, write the pixel cache."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from platform_core.datasets import ingest
from platform_core.db.session import unit_of_work
from platform_core.dicom.read import Caps
from worker.app import celery_app
from worker.context import context


# An upload is one transaction that lasts as long as its body takes to stream in; on SQLite it holds
# the write lock that long, which can outlast the busy timeout here. The task is idempotent: retry.
@celery_app.task(
    name="ingest.process_image",
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
    """
    ctx = context()
    with unit_of_work(ctx.sessions) as session:
        jobs = ingest.pending_pixels(session, image_ids)
    results = ingest.build_caches(
        ctx.store, jobs.values(), secret=ctx.settings.resolved_secret(), caps=Caps.of(ctx.settings)
    )
    with unit_of_work(ctx.sessions) as session:
        statuses = ingest.record_pixels(session, results)
    for result in results:
        if result.delete_key and result.image_id in statuses:
            ctx.store.delete(result.delete_key)
    return [statuses.get(i, jobs[i].status if i in jobs else None) for i in image_ids]
