"""Alembic environment: the URL comes from the caller's config or from MEDTUNE_DATABASE_URL."""

from alembic import context
from sqlalchemy import pool

from platform_core.config import get_settings
from platform_core.db.models import Base
from platform_core.db.session import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().db_url


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
