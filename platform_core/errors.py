"""Domain errors that carry their HTTP status; one handler in api/ renders them."""

from __future__ import annotations


class PlatformError(Exception):
    status_code = 500
    type = "platform_error"

    def __init__(self, message: str, status_code: int | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.param = param


class Invalid(PlatformError):
    status_code = 422
    type = "invalid_request_error"


class BadRequest(PlatformError):
    status_code = 400
    type = "invalid_request_error"


class NotFound(PlatformError):
    status_code = 404
    type = "not_found_error"


class Conflict(PlatformError):
    status_code = 409
    type = "conflict_error"


class Gone(PlatformError):
    status_code = 410
    type = "gone_error"


class PayloadTooLarge(PlatformError):
    status_code = 413
    type = "payload_too_large_error"


class UnsupportedMediaType(PlatformError):
    status_code = 415
    type = "unsupported_media_type_error"


class Unauthenticated(PlatformError):
    status_code = 401
    type = "authentication_error"


class Forbidden(PlatformError):
    status_code = 403
    type = "permission_error"


class TooManyRequests(PlatformError):
    """429: the caller is over a concurrency limit; `retry_after` (seconds) goes in the Retry-After header."""

    status_code = 429
    type = "rate_limit_error"

    def __init__(self, message: str, retry_after: int = 1, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after
