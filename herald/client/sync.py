"""`HeraldClient`: the blocking client (httpx.Client)."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

import httpx

from herald.client.core import Calls, RetryPolicy
from herald.client.models import Subscriber
from herald.client.transport import client_options, sync_method


class HeraldClient:
    """Herald's API from a backend (with an API key) or for one subscriber (with their signed
    client token, for the inbox calls).

        herald = HeraldClient("https://herald.example.com", token=api_key)
        herald.upsert_subscriber("user-42", email="ada@example.com")
        herald.trigger(type="comment", title="New comment", message="...",
                       recipients=["user-42"], channels=["inapp", "email"])

    429 and 503 answers are retried after their `Retry-After`, up to `retry.max_attempts`;
    see `RetryPolicy`. Close it (or use it as a context manager) to release its connections.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.calls, self.retry, options = client_options(base_url, token, timeout, retry)
        self.http = http or httpx.Client(**options)

    upsert_subscriber = sync_method(Calls.upsert_subscriber)
    get_subscriber = sync_method(Calls.get_subscriber)
    delete_subscriber = sync_method(Calls.delete_subscriber)
    list_subscribers = sync_method(Calls.list_subscribers)
    bulk_upsert_subscribers = sync_method(Calls.bulk_upsert_subscribers)
    trigger = sync_method(Calls.trigger)
    notification = sync_method(Calls.notification)
    inbox = sync_method(Calls.inbox)
    unread_count = sync_method(Calls.unread_count)
    mark_read = sync_method(Calls.mark_read)
    mark_all_read = sync_method(Calls.mark_all_read)
    create_api_key = sync_method(Calls.create_api_key)

    def iter_subscribers(self, *, page_size: int | None = None) -> Iterator[Subscriber]:
        """Every subscriber, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_subscribers(limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HeraldClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
