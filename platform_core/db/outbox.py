"""Tasks a service wants run once its transaction commits: named, with ids only, never data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from platform_core.tasks import TaskSpec

KEY = "medtune.outbox"


@dataclass(frozen=True)
class TaskMessage:
    name: str
    args: tuple[Any, ...] = ()
    queue: str = "ingest"
    kwargs: dict[str, Any] = field(default_factory=dict)


Dispatch = Callable[[TaskMessage], None]


def enqueue(session: Session, task: TaskSpec, *args: Any) -> None:
    session.info.setdefault(KEY, []).append(TaskMessage(task.name, args, task.queue))


def flush(session: Session, dispatch: Dispatch) -> None:
    pending: list[TaskMessage] = session.info.pop(KEY, [])
    for message in pending:
        dispatch(message)
