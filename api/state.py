"""What the lifespan builds once per process and every request shares."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from platform_core.config import Settings
from platform_core.db.outbox import Dispatch
from platform_core.storage import ObjectStore


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    dispatch: Dispatch
    secret: str
    # For GET/HEAD: on SQLite these never take the write lock (see platform_core.db.session).
    read_sessions: sessionmaker[Session] | None = None

    def sessions_for(self, method: str) -> sessionmaker[Session]:
        if method in ("GET", "HEAD", "OPTIONS") and self.read_sessions is not None:
            return self.read_sessions
        return self.sessions
