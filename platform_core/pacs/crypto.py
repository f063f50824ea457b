"""The deployment key for PACS secrets at rest: Fernet under a key derived (HKDF-SHA256) from the
de-identification secret, so a deployment has one secret to keep and the two uses never share a key."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INFO = b"medtune pacs secrets v1"


def fernet(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str, value: Any) -> bytes:
    """JSON, encrypted and authenticated."""
    return fernet(secret).encrypt(json.dumps(value).encode())


def open_sealed(secret: str, token: bytes) -> Any:
    try:
        return json.loads(fernet(secret).decrypt(token))
    except InvalidToken:
        raise RuntimeError(
            "a PACS secret does not decrypt: was the de-identification secret changed?"
        ) from None
