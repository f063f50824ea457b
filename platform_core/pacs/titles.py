"""Called AE titles of datasets and model versions: one holder in the whole deployment, never the
listener's own title, and a 409 (not the unique constraint's 500) for the loser of a race."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from platform_core.errors import Conflict, Invalid
from platform_core.pacs import repository


def free_title(session: Session, wanted: str | None, listener_ae_title: str | None, param: str) -> str | None:
    """`wanted`, stripped, when no dataset or model version holds it and it is not the listener's own."""
    if wanted is None:
        return None
    title = wanted.strip()
    if listener_ae_title is not None and title == listener_ae_title.strip():
        raise Invalid(
            f"'{title}' is the DICOM listener's own AE title (MEDTUNE_DICOM_AE_TITLE); "
            "a dataset or a model version needs another one",
            param=param,
        )
    if repository.ae_taken(session, title):
        raise taken(title, param)
    return title


@contextmanager
def claim(session: Session, title: str | None, param: str) -> Iterator[None]:
    """Flush what the block adds or changes inside a savepoint: when another request committed the same
    title after `free_title` looked, the unique constraint answers and this becomes a Conflict; the
    session stays usable."""
    try:
        with session.begin_nested():
            yield
            session.flush()
    except IntegrityError as exc:
        if title is None or "dicom_ae_title" not in str(exc.orig):
            raise
        raise taken(title, param) from None


def taken(title: str, param: str) -> Conflict:
    return Conflict(f"the AE title '{title}' is taken", param=param)
