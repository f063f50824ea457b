"""Delivery counts of tasks that died mid-work, so a poison task ends with a reason instead of looping.

A task counts a delivery (and commits it) before its work, and clears the count when the work ends,
normally or with an exception it handles. Only a delivery whose process died (SIGKILL, out of memory,
os._exit) leaves its count behind: the next delivery reads it and, past the limit, ends the work with a
reason (an image `rejected: worker_crash`, a job `failed`, a batch prediction `failed`). Broker
redelivery flags are no help: they differ by transport and a beat's requeue is a new message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from platform_core.db.base import Base, utcnow

# The reason (image) or error code (job) of work that ended because its deliveries kept dying.
WORKER_CRASH = "worker_crash"


class TaskAttempt(Base):
    __tablename__ = "task_attempts"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)  # "<kind>:<entity id>"
    count: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def key(kind: str, entity_id: str) -> str:
    return f"{kind}:{entity_id}"


def counts(session: Session, keys: Sequence[str]) -> dict[str, int]:
    """Deliveries of each key that died before they ended (0 when none)."""
    found = session.execute(select(TaskAttempt.key, TaskAttempt.count).where(TaskAttempt.key.in_(list(keys))))
    known = dict(found.tuples().all())
    return {k: int(known.get(k, 0)) for k in keys}


def begin(session: Session, keys: Sequence[str]) -> dict[str, int]:
    """Count one more delivery of each key; returns the counts before it. The caller commits before
    it works, so that a process that dies leaves the count behind."""
    before = counts(session, keys)
    for k, n in before.items():
        if n:
            session.execute(
                update(TaskAttempt).where(TaskAttempt.key == k).values(count=n + 1, updated_at=utcnow())
            )
        else:
            session.add(TaskAttempt(key=k, count=1))
    session.flush()
    return before


def undo(session: Session, keys: Sequence[str]) -> None:
    """Take back this delivery's count: it ended with an exception its task handles (a retry)."""
    session.execute(
        update(TaskAttempt).where(TaskAttempt.key.in_(list(keys))).values(count=TaskAttempt.count - 1)
    )
    session.execute(delete(TaskAttempt).where(TaskAttempt.key.in_(list(keys)), TaskAttempt.count <= 0))
    session.flush()


def clear(session: Session, keys: Sequence[str]) -> None:
    """The work ended (done, failed or given up): forget its deliveries."""
    session.execute(delete(TaskAttempt).where(TaskAttempt.key.in_(list(keys))))
    session.flush()
