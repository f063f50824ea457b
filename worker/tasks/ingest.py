"""Pixel work for one uploaded image: decode, window, resize, write the pixel cache."""

from __future__ import annotations

from platform_core.datasets.ingest import process_image as process
from platform_core.db.session import unit_of_work
from worker.app import celery_app
from worker.context import context


@celery_app.task(name="ingest.process_image", acks_late=True)
def process_image(image_id: str) -> str | None:
    ctx = context()
    with unit_of_work(ctx.sessions) as session:
        return process(session, ctx.store, image_id)
