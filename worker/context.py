"""Per-process resources for tasks (engine, sessions, object store), built on first use, and the
delivery count that ends a task which keeps killing its worker (platform_core.db.attempts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from platform_core.config import Settings, get_settings
from platform_core.db import attempts
from platform_core.db.session import make_engine, make_sessionmaker, unit_of_work
from platform_core.storage import ObjectStore, open_store
from platform_core.tasks import TaskSpec


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    store: ObjectStore

    def begin_delivery(self, key: str) -> int:
        """Count this delivery (committed before the work); returns how many before it died."""
        with unit_of_work(self.sessions) as session:
            return attempts.begin(session, [key])[key]

    def end_delivery(self, key: str) -> None:
        with unit_of_work(self.sessions) as session:
            attempts.clear(session, [key])

    @contextmanager
    def delivery(self, spec: TaskSpec, item_id: str) -> Iterator[int]:
        """Count this delivery of `spec` for `item_id`, yield how many before it died, clear it after."""
        key = attempts.key(spec.name, item_id)
        died = self.begin_delivery(key)
        try:
            yield died
        finally:
            self.end_delivery(key)

    def gave_up(self, died: int) -> bool:
        return died >= self.settings.max_task_attempts


@lru_cache
def context() -> WorkerContext:
    settings = get_settings()
    engine = make_engine(settings.db_url)
    return WorkerContext(
        settings, make_sessionmaker(engine), open_store(settings.object_store_url or "", settings)
    )
