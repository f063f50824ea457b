"""API errors as exceptions named after the server's error type, carrying its message and param."""

from __future__ import annotations

from typing import Any

import httpx


class MedtuneError(Exception):
    """Every error the SDK raises."""


class APIConnectionError(MedtuneError):
    """The server could not be reached (after the retries)."""


class APITimeoutError(APIConnectionError):
    """The server took longer than the client's timeout to answer."""


class APIError(MedtuneError):
    """The server answered with an error: `{"error": {"type", "message", "param"}}`."""

    def __init__(
        self,
        message: str,
        status_code: int,
        type_: str = "api_error",
        param: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type_
        self.param = param
        self.request_id = request_id

    def __str__(self) -> str:
        where = f" (param: {self.param})" if self.param else ""
        return f"{self.status_code} {self.type}: {self.message}{where}"


class InvalidRequestError(APIError): ...


class AuthenticationError(APIError): ...


class PermissionDeniedError(APIError): ...


class NotFoundError(APIError): ...


class ConflictError(APIError): ...


class GoneError(APIError): ...


class PayloadTooLargeError(APIError): ...


class UnsupportedMediaTypeError(APIError): ...


class ServiceUnavailableError(APIError): ...


class PlatformError(APIError):
    """A domain error the server gave no more specific type."""


BY_TYPE: dict[str, type[APIError]] = {
    "invalid_request_error": InvalidRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "conflict_error": ConflictError,
    "gone_error": GoneError,
    "payload_too_large_error": PayloadTooLargeError,
    "unsupported_media_type_error": UnsupportedMediaTypeError,
    "service_unavailable_error": ServiceUnavailableError,
    "platform_error": PlatformError,
}
# For answers not in our error shape (a proxy's page): the type the status code implies.
BY_STATUS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 409: "conflict_error", 410: "gone_error", 413: "payload_too_large_error",
             415: "unsupported_media_type_error", 422: "invalid_request_error",
             502: "service_unavailable_error", 503: "service_unavailable_error",
             504: "service_unavailable_error"}  # fmt: skip


def error_from_response(response: httpx.Response) -> APIError:
    type_, message, param = BY_STATUS.get(response.status_code, "api_error"), "", None
    try:
        body: Any = response.json()
        err = body["error"]
        type_ = str(err.get("type") or type_)
        message = str(err.get("message") or "")
        param = err.get("param")
    except Exception:  # not our error shape (a proxy's HTML page, say): keep a bounded excerpt
        message = response.text[:500]
    if not message:
        message = response.reason_phrase or f"HTTP {response.status_code}"
    cls = BY_TYPE.get(type_, APIError)
    return cls(message, response.status_code, type_, param, response.headers.get("x-request-id"))


def raise_for_error(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise error_from_response(response)
