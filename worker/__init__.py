"""Celery processes: the app built from settings and thin tasks that call platform_core."""
