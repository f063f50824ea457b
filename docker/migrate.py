"""Apply the database migrations once per deployment, however many API replicas start together."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from platform_core.config import check_or_exit, get_settings
from platform_core.db.migrate import upgrade

# Any constant works; every replica must use the same one. 0x6d74 is "mt".
MIGRATION_LOCK = 0x6D74_0001


def main() -> None:
    settings = get_settings()
    # Fail before touching the schema when the deployment would pseudonymise with a default secret.
    check_or_exit(settings)
    url = settings.db_url
    if not url.startswith("postgresql"):
        upgrade(url)
        return
    # Replicas queue on a session-level advisory lock; the first migrates, the others find nothing to do.
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                upgrade(url)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
