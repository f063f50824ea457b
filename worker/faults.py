"""Fault injection for tests: with MEDTUNE_TEST_CRASH_FILE set, a task's process dies at listed ids."""

from __future__ import annotations

import os

from worker.context import context


def crash_at(*ids: str) -> None:
    """Die as an out-of-memory kill would (no cleanup, no exception) when the file lists one of `ids`.
    Unset (every deployment), this reads nothing."""
    path = context().settings.test_crash_file
    if path is None or not path.exists():
        return
    if set(path.read_text().split()).intersection(ids):
        os._exit(137)
