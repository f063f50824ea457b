"""Alembic migrations; `medtune db upgrade` runs them."""
