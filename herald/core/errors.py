"""Errors a service raises on purpose; the web layer renders them all as
`{"error": {"code", "message", "details"}}` with the right status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        details: Any = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers
        if code:
            self.code = code


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message, [{"field": field, "message": message}] if field else None)


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class InvalidField(ApiError):
    """Input that passed the schema but not the data (an unknown user id, for example)."""

    status = 422
    code = "validation_error"

    def __init__(self, field: str, message: str):
        super().__init__(f"invalid {field}: {message}", [{"field": field, "message": message}])


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: int):
        super().__init__(
            f"too many requests; retry in {retry_after} s",
            {"retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


class ServiceUnavailable(ApiError):
    """A component the request needs is away for now (the database): retry after a moment."""

    status = 503
    code = "service_unavailable"

    def __init__(self, message: str, retry_after: int, *, code: str | None = None):
        super().__init__(
            message,
            {"retryAfter": retry_after},
            code=code,
            headers={"Retry-After": str(retry_after)},
        )
