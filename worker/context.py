"""Per-process resources for tasks (engine, sessions, object store), built on first use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from platform_core.config import Settings, get_settings
from platform_core.db.session import make_engine, make_sessionmaker
from platform_core.storage import ObjectStore, open_store


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    store: ObjectStore


@lru_cache
def context() -> WorkerContext:
    settings = get_settings()
    engine = make_engine(settings.db_url)
    return WorkerContext(
        settings, make_sessionmaker(engine), open_store(settings.object_store_url or "", settings)
    )
