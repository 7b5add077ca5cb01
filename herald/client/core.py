"""The client's logic, written once for both transports.

Every API call is a `Call`: the `httpx.Request` to send, whether sending it twice is harmless,
and how to read a success. `exchange` is the retry loop as a generator: it yields what to do
next (send this request, or sleep this long) and is sent back what happened, so
`HeraldClient` (httpx.Client, time.sleep) and `AsyncHeraldClient` (httpx.AsyncClient,
asyncio.sleep) only carry those steps out: neither has any logic of its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from herald.client import models
from herald.client.errors import (
    HeraldAPIError,
    HeraldConnectionError,
    UnexpectedResponse,
    error_for,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

USER_AGENT = "herald-python-client/0.1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Answers that mean "not now": the request did nothing and may be sent again after a while.
# 429: refused before it ran. 503: Herald's database was away (nothing the trigger asked for was
# stored), or a load balancer had no server for it.
RETRY_STATUSES = frozenset({429, 503})
# The same Idempotency-Key's first request is still running (this is a retry of it after a
# broken connection): its answer will be there in a moment.
RETRY_CODES = frozenset({"idempotency_in_flight"})
# Errors raised before a byte of the request left: retrying those is always safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class _Unset(Enum):
    UNSET = "UNSET"


# A subscriber field left out of an upsert keeps its value; None clears it.
UNSET: Final = _Unset.UNSET
Maybe: TypeAlias = T | None | Literal[_Unset.UNSET]


@dataclass(frozen=True)
class Call(Generic[T]):
    request: httpx.Request
    parse: Callable[[httpx.Response], T]
    # Sending it twice has the effect of sending it once (GET, PUT, DELETE, a POST with an
    # Idempotency-Key), so a connection that broke mid-request may be retried.
    idempotent: bool


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | Sleep
Outcome = httpx.Response | httpx.TransportError | None


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries. `max_attempts` counts the first one (1: never retry).
    A 429 or 503 is sent again after its `Retry-After` (else `backoff`); a `Retry-After` longer
    than `max_wait` is not waited out: the error is raised, carrying `retry_after`, for the
    caller to decide. Connection errors wait `backoff * 2**n` (with jitter, at most `max_wait`)."""

    max_attempts: int = 4
    backoff: float = 0.5
    max_wait: float = 30.0

    def after_response(self, call: Call[Any], attempt: int, error: HeraldAPIError) -> float | None:
        again = error.status in RETRY_STATUSES or error.code in RETRY_CODES
        if not again or attempt >= self.max_attempts:
            return None
        wait = error.retry_after
        if wait is None:
            return self._backoff(attempt)
        return wait if wait <= self.max_wait else None

    def after_error(
        self, call: Call[Any], attempt: int, error: httpx.TransportError
    ) -> float | None:
        if attempt >= self.max_attempts:
            return None
        if not (call.idempotent or isinstance(error, _NOT_SENT)):
            return None  # it may have reached Herald and done its work: never twice
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        return min(self.max_wait, self.backoff * 2 ** (attempt - 1) * random.uniform(0.8, 1.2))


def exchange(call: Call[T], policy: RetryPolicy) -> Generator[Step, Outcome, T]:
    """Send `call` until it succeeds, fails for good, or runs out of attempts."""
    attempt = 0
    while True:
        attempt += 1
        outcome = yield Send(call.request)
        if isinstance(outcome, httpx.Response):
            if outcome.is_success:
                try:
                    return call.parse(outcome)
                except ValueError as problem:  # not JSON, or pydantic's ValidationError
                    raise UnexpectedResponse(outcome, problem) from problem
            error = error_for(outcome)
            delay = policy.after_response(call, attempt, error)
            if delay is None:
                raise error
        else:
            assert isinstance(outcome, httpx.TransportError)
            delay = policy.after_error(call, attempt, outcome)
            if delay is None:
                raise HeraldConnectionError(
                    f"{call.request.method} {call.request.url.path}: {outcome!r} "
                    f"(after {attempt} attempt{'s' if attempt > 1 else ''})"
                ) from outcome
        yield Sleep(delay)


# --- The calls ---------------------------------------------------------------------------------
def _model(kind: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return kind.model_validate(response.json())

    return parse


def _drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _segment(value: str | int) -> str:
    """One path segment: an external id may hold anything, `/` included."""
    text = str(value)
    if not text:
        raise ValueError("an id may not be empty")
    return quote(text, safe="")


def _recipient(value: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, str):
        return {"subscriberId": value}
    return dict(value)


class Calls:
    """Builds each call from a base URL, a bearer token and a timeout."""

    def __init__(self, base_url: str, token: str | None, timeout: float) -> None:
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self.token = token
        self.timeout = httpx.Timeout(timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> httpx.Request:
        sent = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        bearer = token or self.token
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        return httpx.Request(
            method,
            self.base_url.join(path.lstrip("/")),
            json=json,
            params=_drop_none(params or {}),
            headers=sent,
            extensions={"timeout": self.timeout.as_dict()},
        )

    def call(
        self,
        method: str,
        path: str,
        parse: Callable[[httpx.Response], T],
        *,
        idempotent: bool | None = None,
        **options: Any,
    ) -> Call[T]:
        request = self.request(method, path, **options)
        if idempotent is None:
            idempotent = method != "POST" or IDEMPOTENCY_HEADER.lower() in request.headers
        return Call(request, parse, idempotent)

    # subscribers
    def upsert_subscriber(
        self,
        subscriber_id: str,
        *,
        email: Maybe[str] = UNSET,
        name: Maybe[str] = UNSET,
        locale: Maybe[str] = UNSET,
        timezone: Maybe[str] = UNSET,
        data: Maybe[Mapping[str, Any]] = UNSET,
    ) -> Call[models.Subscriber]:
        """Create or update the subscriber with the application's own id. A field left out
        keeps its value, None clears it; `data` is replaced whole."""
        fields = {"email": email, "name": name, "locale": locale, "timezone": timezone}
        body: dict[str, Any] = {k: v for k, v in fields.items() if v is not UNSET}
        if data is not UNSET:
            body["data"] = dict(data) if data is not None else None
        return self.call(
            "PUT",
            f"api/subscribers/{_segment(subscriber_id)}",
            _model(models.Subscriber),
            json=body,
        )

    def get_subscriber(self, subscriber_id: str) -> Call[models.Subscriber]:
        path = f"api/subscribers/{_segment(subscriber_id)}"
        return self.call("GET", path, _model(models.Subscriber))

    def delete_subscriber(self, subscriber_id: str) -> Call[models.DeletedSubscriber]:
        path = f"api/subscribers/{_segment(subscriber_id)}"
        return self.call("DELETE", path, _model(models.DeletedSubscriber))

    def list_subscribers(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Call[models.SubscriberPage]:
        params = {"limit": limit, "cursor": cursor}
        return self.call("GET", "api/subscribers", _model(models.SubscriberPage), params=params)

    def bulk_upsert_subscribers(
        self, subscribers: Iterable[Mapping[str, Any]]
    ) -> Call[models.BulkResult]:
        """Each subscriber is `{"subscriberId": ..., "email": ..., ...}`; an upsert, so safe to
        send twice."""
        body = {"subscribers": [dict(s) for s in subscribers]}
        return self.call(
            "POST", "api/subscribers/bulk", _model(models.BulkResult), json=body, idempotent=True
        )

    # triggers and notifications
    def trigger(
        self,
        *,
        type: str,
        title: str,
        message: str,
        recipients: Sequence[str | Mapping[str, Any]],
        channels: Sequence[models.Channel] = ("inapp",),
        priority: models.Priority | None = None,
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Call[models.TriggerResult]:
        """`recipients`: subscriber ids (strings), or objects as the API takes them
        (`{"subscriberId", "email"}`, `{"userId"}`, `{"email"}`)."""
        if isinstance(recipients, str | bytes):
            raise TypeError("recipients is a list: [subscriber_id, ...]")
        body = _drop_none(
            {
                "recipients": [_recipient(r) for r in recipients],
                "type": type,
                "title": title,
                "message": message,
                "channels": list(channels),
                "priority": priority,
                "data": dict(data) if data is not None else None,
            }
        )
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else None

        def parse(response: httpx.Response) -> models.TriggerResult:
            replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
            return models.TriggerResult.model_validate({**response.json(), "replayed": replayed})

        return self.call("POST", "api/notifications", parse, json=body, headers=headers)

    def notification(
        self, channel: models.Channel, notification_id: int
    ) -> Call[models.NotificationRecord]:
        def parse(response: httpx.Response) -> models.NotificationRecord:
            return models.NotificationRecord.model_validate({"channel": channel, **response.json()})

        path = f"api/notifications/{_segment(channel)}/{int(notification_id)}"
        return self.call("GET", path, parse)

    # the inbox: a subscriber's own, with their client token (or a session token)
    def inbox(
        self,
        *,
        unread: bool = False,
        page: int | None = None,
        limit: int | None = None,
        token: str | None = None,
    ) -> Call[models.InboxPage]:
        params = {"unread": "true" if unread else None, "page": page, "limit": limit}
        return self.call(
            "GET", "api/me/notifications", _model(models.InboxPage), params=params, token=token
        )

    def unread_count(self, *, token: str | None = None) -> Call[int]:
        def parse(response: httpx.Response) -> int:
            return int(response.json()["unreadCount"])

        return self.call("GET", "api/me/notifications/unread-count", parse, token=token)

    def mark_read(self, notification_id: int, *, token: str | None = None) -> Call[models.Marked]:
        path = f"api/me/notifications/{int(notification_id)}/read"
        # Marking read twice marks it once.
        return self.call("POST", path, _model(models.Marked), token=token, idempotent=True)

    def mark_all_read(self, *, token: str | None = None) -> Call[models.Marked]:
        path = "api/me/notifications/read-all"
        return self.call("POST", path, _model(models.Marked), token=token, idempotent=True)

    # operations
    def create_api_key(self, name: str, scopes: Sequence[str]) -> Call[models.ApiKey]:
        body = {"name": name, "scopes": list(scopes)}
        return self.call("POST", "api/ops/api-keys", _model(models.ApiKey), json=body)
