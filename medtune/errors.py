"""API errors as exceptions named after the server's error type, carrying its message."""

from __future__ import annotations

import httpx


class MedtuneError(Exception):
    def __init__(self, message: str, status_code: int, type_: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type_
        self.param = param


class InvalidRequestError(MedtuneError): ...


class AuthenticationError(MedtuneError): ...


class PermissionError_(MedtuneError): ...


class NotFoundError(MedtuneError): ...


class ConflictError(MedtuneError): ...


class GoneError(MedtuneError): ...


class PayloadTooLargeError(MedtuneError): ...


class UnsupportedMediaTypeError(MedtuneError): ...


class ServiceUnavailableError(MedtuneError): ...


class APIError(MedtuneError): ...


BY_TYPE: dict[str, type[MedtuneError]] = {
    "invalid_request_error": InvalidRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionError_,
    "not_found_error": NotFoundError,
    "conflict_error": ConflictError,
    "gone_error": GoneError,
    "payload_too_large_error": PayloadTooLargeError,
    "unsupported_media_type_error": UnsupportedMediaTypeError,
    "service_unavailable_error": ServiceUnavailableError,
}


def raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        err = response.json()["error"]
        type_, message, param = err.get("type", "api_error"), err.get("message", ""), err.get("param")
    except Exception:
        type_, message, param = "api_error", response.text[:500], None
    raise BY_TYPE.get(type_, APIError)(message, response.status_code, type_, param)
