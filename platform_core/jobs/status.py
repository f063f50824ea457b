"""A job's status changes and events: each change and its event are written in one flush, so a reader
never sees an event before its cause; failures carry an error code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from platform_core.db import attempts
from platform_core.errors import PlatformError
from platform_core.ids import new_id
from platform_core.jobs import repository as repo
from platform_core.jobs.models import Job, JobEvent


def now() -> datetime:
    return datetime.now(UTC)


def add_event(
    session: Session,
    job: Job,
    message: str,
    level: str = "info",
    type_: str = "message",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    event = JobEvent(id=new_id("ftevent"), job_id=job.id, level=level, type=type_, message=message, data=data)
    session.add(event)
    return event


def set_status(session: Session, job: Job, status: str, message: str, level: str = "info") -> None:
    job.status = status
    job.waiting_since = None  # a job the running-jobs limit holds back waits from hold() on
    if status in ("succeeded", "failed", "cancelled"):
        job.finished_at = now()
    add_event(session, job, message, level, data={"status": status})
    session.flush()


def fail(session: Session, job: Job, code: str, message: str, param: str | None = None) -> None:
    job.error = {"code": code, "message": message, "param": param}
    set_status(session, job, "failed", message, level="error")


def fail_unexpectedly(session: Session, job_id: str, stage: str) -> None:
    job = repo.get_job(session, job_id, lock=True)
    if not job.is_terminal:
        fail(session, job, "internal_error", f"{stage} failed unexpectedly; see the worker log")


def fail_crashed(session: Session, job_id: str, stage: str, died: int) -> None:
    """The job's task died with its worker `died` times (killed, out of memory): it is not tried again."""
    job = repo.get_job(session, job_id, lock=True)
    if not job.is_terminal:
        message = (f"{stage} ended its worker process {died} times (killed, out of memory or crashed); "
                   "it is not tried again")  # fmt: skip
        fail(session, job, attempts.WORKER_CRASH, message)


def error_code(exc: PlatformError) -> str:
    return str(getattr(exc, "code", None) or exc.type)
