"""`AsyncHeraldClient`: the asyncio client (httpx.AsyncClient), the same calls awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

import httpx

from herald.client.core import Calls, RetryPolicy
from herald.client.models import Subscriber
from herald.client.transport import async_method, client_options


class AsyncHeraldClient:
    """`HeraldClient` for asyncio: every method is a coroutine.

    async with AsyncHeraldClient(url, token=api_key) as herald:
        await herald.trigger(type="comment", title="...", message="...", recipients=["u42"])
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.calls, self.retry, options = client_options(base_url, token, timeout, retry)
        self.http = http or httpx.AsyncClient(**options)

    upsert_subscriber = async_method(Calls.upsert_subscriber)
    get_subscriber = async_method(Calls.get_subscriber)
    delete_subscriber = async_method(Calls.delete_subscriber)
    list_subscribers = async_method(Calls.list_subscribers)
    bulk_upsert_subscribers = async_method(Calls.bulk_upsert_subscribers)
    trigger = async_method(Calls.trigger)
    notification = async_method(Calls.notification)
    inbox = async_method(Calls.inbox)
    unread_count = async_method(Calls.unread_count)
    mark_read = async_method(Calls.mark_read)
    mark_all_read = async_method(Calls.mark_all_read)
    create_api_key = async_method(Calls.create_api_key)

    async def iter_subscribers(self, *, page_size: int | None = None) -> AsyncIterator[Subscriber]:
        """Every subscriber, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_subscribers(limit=page_size, cursor=cursor)
            for subscriber in page.items:
                yield subscriber
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncHeraldClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
