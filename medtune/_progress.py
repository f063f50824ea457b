"""Rich progress bars for uploads and training runs (stderr, so --json output stays clean)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def wanted(progress: bool | None) -> bool:
    """None means: show a bar when a person is watching (stderr is a terminal)."""
    return sys.stderr.isatty() if progress is None else progress


def upload_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )


def training_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]}"),
        TextColumn("{task.fields[metric]}"),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )


class NullProgress:
    """Stands in for a bar when none is wanted."""

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None
