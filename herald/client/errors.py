"""What the client raises: one type per kind of failure, each carrying the server's answer."""

from __future__ import annotations

from typing import Any

import httpx


class HeraldError(Exception):
    """Anything the Herald client raises."""


class HeraldConnectionError(HeraldError):
    """Herald could not be reached (or the connection broke) and retrying did not help or was
    not safe: a POST without an idempotency key whose request may have reached the server."""


class UnexpectedResponse(HeraldError):
    """A success whose body is not what the call answers (not JSON, or not its shape): a proxy
    in the way, or a Herald of another version. `body` is the text received."""

    def __init__(self, response: httpx.Response, problem: Exception) -> None:
        self.status: int = response.status_code
        self.body: str = response.text
        super().__init__(
            f"{response.request.method} {response.request.url.path} answered {self.status} "
            f"with an unexpected body: {problem}"
        )


class HeraldAPIError(HeraldError):
    """Herald answered with an error. `body` is the server's JSON as it came
    (`{"error": {"code", "message", "details"}}`); `code`, `message` and `details` are read
    from it."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.status: int = response.status_code
        self.code: str = str(error.get("code") or f"http_{response.status_code}")
        self.message: str = str(error.get("message") or response.reason_phrase or "error")
        self.details: Any = error.get("details")
        self.body: Any = body
        self.headers: httpx.Headers = response.headers
        self.request_id: str | None = response.headers.get("x-request-id")
        self.retry_after: float | None = retry_after(response)
        super().__init__(f"{self.status} {self.code}: {self.message}")


class BadRequest(HeraldAPIError):
    """400."""


class Unauthorized(HeraldAPIError):
    """401: no token, or a token Herald does not accept (expired, revoked, wrongly signed)."""


class Forbidden(HeraldAPIError):
    """403: the token is valid but may not do this (an API key without the scope)."""


class NotFound(HeraldAPIError):
    """404."""


class Conflict(HeraldAPIError):
    """409: e.g. an idempotency key reused while its first request still runs."""


class ValidationError(HeraldAPIError):
    """422: `details` names each field that was refused."""


class RateLimited(HeraldAPIError):
    """429, after the client's retries (or when `Retry-After` was longer than it waits)."""


class ServiceUnavailable(HeraldAPIError):
    """503 (the database is away, or the server is shutting down), after the client's retries."""


class ServerError(HeraldAPIError):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[HeraldAPIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(response: httpx.Response) -> HeraldAPIError:
    """The exception for an error answer, with its body (JSON when it is, else the text)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    kind = _BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else HeraldAPIError
    return kind(response, body)


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds: a number, or an HTTP date (RFC 9110); None when absent or
    unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
