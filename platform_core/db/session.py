"""Engines and session factories; callers (requests, tasks) own commit and rollback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from platform_core.db import outbox

BEGIN_OPTION = "medtune_sqlite_begin"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 120}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN itself.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # Writers hold the lock briefly (uploads commit before each read from the client); waiting
            # out a long one beats failing with "database is locked".
            cur.execute("PRAGMA busy_timeout=120000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A deferred transaction that reads, then writes after another process committed, fails at
            # once with "database is locked" (the busy timeout cannot help it). Writers therefore take
            # the write lock up front; read-only sessions (read_only()) stay deferred and never block.
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(BEGIN_OPTION, 'IMMEDIATE')}")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def read_only(engine: Engine) -> Engine:
    """The same pool, for sessions that only read: on SQLite their transactions stay deferred."""
    return engine.execution_options(**{BEGIN_OPTION: "DEFERRED"})


def committer(session: Session, dispatch: outbox.Dispatch) -> Callable[[], None]:
    """The transport's commit for a request that commits as it goes: its queued tasks are sent after
    each commit, and the session begins its next transaction only at its next statement."""

    def commit() -> None:
        session.commit()
        outbox.flush(session, dispatch)

    return commit


@contextmanager
def unit_of_work(
    factory: sessionmaker[Session], dispatch: outbox.Dispatch | None = None
) -> Iterator[Session]:
    """Commit on success, roll back on error; queued tasks are sent only after the commit."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        if dispatch is not None:
            outbox.flush(session, dispatch)
