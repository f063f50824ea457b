"""medtune: the Python SDK (`medtune.Client`, `medtune.AsyncClient`) and the `medtune` command line."""

from medtune.aio import AsyncClient
from medtune.client import Client
from medtune.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    GoneError,
    InvalidRequestError,
    MedtuneError,
    NotFoundError,
    PermissionDeniedError,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "GoneError",
    "InvalidRequestError",
    "MedtuneError",
    "NotFoundError",
    "PermissionDeniedError",
]
__version__ = "0.1.0"
