"""The Python client (`herald.client`), blocking and asyncio, against a live Herald, and its
retries against a scripted HTTP server that answers what a test needs (429, 503, a dropped
connection) on a real socket."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from herald.client import (
    AsyncHeraldClient,
    Conflict,
    Forbidden,
    HeraldClient,
    HeraldConnectionError,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    Unauthorized,
    ValidationError,
    sign_client_token,
)
from herald.client.core import Calls, Sleep, exchange
from herald.core.redis import free_port
from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.waiting import eventually

CLIENT_SECRET = "test-client-token-secret-0123456789abcdef"
FAST = RetryPolicy(max_attempts=4, backoff=0.05, max_wait=5)


# --- One client, blocking or asyncio, driven the same way from an async test -------------------
@dataclass
class Either:
    """A `HeraldClient` (run in a thread: the live Herald shares this test's event loop) or an
    `AsyncHeraldClient`; `statuses` lists every HTTP answer it received, retries included."""

    kind: str
    client: HeraldClient | AsyncHeraldClient
    statuses: list[int]

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        call = getattr(self.client, method)
        if isinstance(self.client, HeraldClient):
            return await asyncio.to_thread(call, *args, **kwargs)
        return await call(*args, **kwargs)

    async def close(self) -> None:
        if isinstance(self.client, HeraldClient):
            self.client.close()
        else:
            await self.client.aclose()


@pytest.fixture(params=["sync", "async"])
async def clients(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    made: list[Either] = []

    def make(url: str, token: str | None = None, **options: Any) -> Either:
        statuses: list[int] = []
        hooks: dict[str, Any]
        client: HeraldClient | AsyncHeraldClient
        if request.param == "sync":
            hooks = {"response": [lambda r: statuses.append(r.status_code)]}
            client = HeraldClient(url, token, http=httpx.Client(event_hooks=hooks), **options)
        else:

            async def record(response: httpx.Response) -> None:
                statuses.append(response.status_code)

            hooks = {"response": [record]}
            client = AsyncHeraldClient(
                url, token, http=httpx.AsyncClient(event_hooks=hooks), **options
            )
        made.append(Either(request.param, client, statuses))
        return made[-1]

    yield make
    for either in made:
        await either.close()


# --- Against a live Herald ------------------------------------------------------------------------
@pytest.fixture
async def live(herald_factory: Any) -> RunningHerald:
    return await herald_factory(client_token_secret=CLIENT_SECRET)  # type: ignore[no-any-return]


class TestSubscribers:
    async def test_upsert_get_list_bulk_delete(self, live: RunningHerald, clients: Any) -> None:
        herald = clients(live.url, ADMIN_TOKEN)
        ext = f"auth0|{uuid.uuid4().hex[:8]}"  # the application's own id, as it spells it
        email = f"ada-{uuid.uuid4().hex[:8]}@example.com"  # one database serves the session
        made = await herald("upsert_subscriber", ext, email=email, name="Ada")
        assert (made.subscriber_id, made.email, made.name) == (ext, email, "Ada")
        changed = await herald("upsert_subscriber", ext, locale="fr", data={"plan": "pro"})
        assert (changed.email, changed.locale) == (email, "fr")  # the rest kept
        assert changed.data == {"plan": "pro"}
        assert (await herald("get_subscriber", ext)).locale == "fr"

        prefix = uuid.uuid4().hex[:6]
        batch = [
            {"subscriberId": f"{prefix}-{i}", "email": f"{prefix}{i}@example.com"} for i in range(5)
        ]
        result = await herald("bulk_upsert_subscribers", batch)
        assert (result.created, result.updated) == (5, 0)
        again = await herald("bulk_upsert_subscribers", batch)  # an upsert: safe to repeat
        assert (again.created, again.updated) == (0, 5)

        seen: list[str] = []
        page = await herald("list_subscribers", limit=2)
        while True:
            assert len(page.items) <= 2
            seen += [s.subscriber_id for s in page.items]
            if not page.next_cursor:
                break
            page = await herald("list_subscribers", limit=2, cursor=page.next_cursor)
        assert {ext, *(s["subscriberId"] for s in batch)} <= set(seen)
        assert len(seen) == len(set(seen))  # no subscriber twice across pages

        changed = await herald("upsert_subscriber", ext, name=None)  # None clears a field
        assert (changed.name, changed.email) == (None, email)

        deleted = await herald("delete_subscriber", ext)
        assert deleted.deleted and deleted.notifications_removed == 0
        with pytest.raises(NotFound) as missing:
            await herald("get_subscriber", ext)
        assert missing.value.status == 404 and missing.value.body["error"]["code"]

    async def test_iterating_every_subscriber(self, live: RunningHerald) -> None:
        prefix = uuid.uuid4().hex[:6]
        batch = [{"subscriberId": f"{prefix}-{i}"} for i in range(7)]
        async with AsyncHeraldClient(live.url, ADMIN_TOKEN) as herald:
            await herald.bulk_upsert_subscribers(batch)
            ids = [s.subscriber_id async for s in herald.iter_subscribers(page_size=3)]
        with HeraldClient(live.url, ADMIN_TOKEN) as blocking:
            pages = blocking.iter_subscribers(page_size=3)
            same = await asyncio.to_thread(lambda: [s.subscriber_id for s in pages])
        assert {b["subscriberId"] for b in batch} <= set(ids)
        assert same == ids


class TestApiKeys:
    async def test_a_trigger_only_key_triggers_and_nothing_else(
        self, live: RunningHerald, clients: Any
    ) -> None:
        admin = clients(live.url, ADMIN_TOKEN)
        made = await admin("create_api_key", "billing-service", ["trigger"])
        assert made.key and made.key.startswith(f"hk_{made.prefix}_") and made.scopes == ["trigger"]
        ext = f"billing-{uuid.uuid4().hex[:6]}"
        await admin("upsert_subscriber", ext, email=f"{ext}@example.com")

        billing = clients(live.url, made.key)
        sent = await billing(
            "trigger", type="invoice", title="Invoice", message="Due", recipients=[ext]
        )
        assert sent.notifications[0].subscriber_id == ext
        record = await admin("notification", "inapp", sent.notifications[0].notification_id)
        assert record.api_key_id == made.id  # who sent it stays on the record
        with pytest.raises(Forbidden) as refused:
            await billing("upsert_subscriber", ext, name="Mallory")
        assert refused.value.status == 403 and "subscribers" in refused.value.message


class TestTriggerAndInbox:
    async def test_subscriber_notified_and_reads_their_inbox_with_a_signed_token(
        self, live: RunningHerald, clients: Any
    ) -> None:
        herald = clients(live.url, ADMIN_TOKEN)
        ext = f"user-{uuid.uuid4().hex[:8]}"
        await herald("upsert_subscriber", ext, email=f"{ext}@example.com", name="Grace")
        token = sign_client_token(CLIENT_SECRET, ext)
        socket_client = RecordingClient(ack=True)  # the subscriber's browser
        await socket_client.connect(live.url)
        try:
            await socket_client.authenticate(token)
            sent = await herald(
                "trigger",
                type="comment",
                title="New comment",
                message="Nice post",
                recipients=[ext],
                channels=["inapp", "email"],
                data={"post": 7},
            )
            assert sent.count == 2 and not sent.replayed
            inapp = next(n for n in sent.notifications if n.channel == "inapp")

            async def delivered() -> bool:
                record = await herald("notification", "inapp", inapp.notification_id)
                return record.delivered

            await eventually(delivered)
        finally:
            await socket_client.close()

        reader = clients(live.url, token)
        page = await reader("inbox")
        assert [(i.id, i.title, i.data) for i in page.items] == [
            (inapp.notification_id, "New comment", {"post": 7})
        ]
        assert await reader("unread_count") == 1
        marked = await reader("mark_read", inapp.notification_id)
        assert (marked.marked, marked.unread_count) == ([inapp.notification_id], 0)
        assert (await reader("inbox", unread=True)).items == []

        email = next(n for n in sent.notifications if n.channel == "email")
        record = await herald("notification", "email", email.notification_id)
        assert record.channel == "email" and record.subject

    async def test_unknown_subscriber_with_an_email_is_made_on_the_fly(
        self, live: RunningHerald, clients: Any
    ) -> None:
        herald = clients(live.url, ADMIN_TOKEN)
        ext = f"new-{uuid.uuid4().hex[:8]}"
        sent = await herald(
            "trigger",
            type="welcome",
            title="Welcome",
            message="Hello",
            recipients=[{"subscriberId": ext, "email": f"{ext}@example.com"}],
            channels=["email"],
        )
        assert sent.count == 1
        assert (await herald("get_subscriber", ext)).email == f"{ext}@example.com"

    async def test_a_session_token_reads_the_inbox_too(
        self, live: RunningHerald, clients: Any
    ) -> None:
        """Herald's own signups stay a way of getting subscribers: the client takes their
        session token as it takes a signed one."""
        user = await live.member()
        herald = clients(live.url, ADMIN_TOKEN)
        sent = await herald(
            "trigger",
            type="note",
            title="Hi",
            message="From the client",
            recipients=[{"userId": user["userId"]}],
        )
        assert [n.user_id for n in sent.notifications] == [user["userId"]]
        reader = clients(live.url, user["token"])
        ids = [i.id for i in (await reader("inbox")).items]
        assert sent.notifications[0].notification_id in ids
        assert await reader("unread_count") >= 1
        assert (await reader("mark_all_read")).unread_count == 0

    async def test_an_idempotency_key_makes_one_notification(
        self, live: RunningHerald, clients: Any
    ) -> None:
        user = await live.member()
        herald = clients(live.url, ADMIN_TOKEN)
        body: dict[str, Any] = {
            "type": "invoice",
            "title": "Invoice 12",
            "message": "Due Friday",
            "recipients": [{"userId": user["userId"]}],
            "idempotency_key": uuid.uuid4().hex,
        }
        first = await herald("trigger", **body)
        second = await herald("trigger", **body)
        assert (first.replayed, second.replayed) == (False, True)
        assert second.notifications == first.notifications
        with pytest.raises(ValidationError) as reused:  # the key, for another request
            await herald("trigger", **{**body, "title": "Invoice 13"})
        assert reused.value.status == 422

    async def test_errors_carry_the_server_answer(self, live: RunningHerald, clients: Any) -> None:
        herald = clients(live.url, ADMIN_TOKEN)
        with pytest.raises(ValidationError) as invalid:
            await herald("trigger", type="Bad Type!", title="x", message="y", recipients=["a"])
        assert invalid.value.code == "validation_error"
        assert any("type" in str(d) for d in invalid.value.details), invalid.value.body
        assert invalid.value.request_id  # X-Request-ID, to find it in Herald's logs

        with pytest.raises(NotFound) as missing:
            await herald("notification", "email", 2**31 - 1)
        assert missing.value.body["error"]["code"] == "not_found"

        with pytest.raises(Unauthorized):
            await clients(live.url)("inbox")  # no token
        expired = sign_client_token(CLIENT_SECRET, "someone", ttl=-60)
        with pytest.raises(Unauthorized) as refused:
            await clients(live.url, expired)("inbox")
        assert refused.value.status == 401
        wrong = sign_client_token("not-the-secret-but-as-long-as-one-0123", "someone")
        with pytest.raises(Unauthorized):
            await clients(live.url, wrong)("unread_count")

    async def test_a_503_is_retried_after_its_retry_after(
        self, herald_factory: Any, stack: dict[str, Any], clients: Any
    ) -> None:
        """Herald's SQLite held locked by another process: the trigger answers 503 with
        `Retry-After: 2`; the client waits that long and sends it again, once the lock is gone,
        and one notification is made."""
        if stack:
            pytest.skip("a SQLite fault")
        live = await herald_factory(workers=False, db_busy_timeout=0.5)
        user = await live.member()
        path = live.settings.effective_database_url.split("///", 1)[1]
        holder = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.2, lambda: (holder.execute("ROLLBACK"), holder.close()))
        herald = clients(live.url, ADMIN_TOKEN)
        title = f"locked-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        release.start()
        try:
            sent = await herald(
                "trigger",
                type="note",
                title=title,
                message="m",
                recipients=[{"userId": user["userId"]}],
            )
        finally:
            release.join()
        assert herald.statuses == [503, 201]
        assert time.monotonic() - started >= 2.4  # 0.5 s busy timeout, then Retry-After: 2
        inbox = await live.http.get("/api/me/notifications", headers=user["auth"])
        assert [i["title"] for i in inbox.json()["items"]].count(title) == 1
        assert sent.count == 1

        holder = sqlite3.connect(path, timeout=5, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            once = clients(live.url, ADMIN_TOKEN, retry=RetryPolicy(max_attempts=1))
            with pytest.raises(ServiceUnavailable) as away:
                await once(
                    "trigger",
                    type="n",
                    title="t",
                    message="m",
                    recipients=[{"userId": user["userId"]}],
                )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert away.value.code == "database_unavailable"
        assert away.value.retry_after == 2


# --- Against a scripted server: retries, exactly --------------------------------------------------
DROP = "drop"  # close the connection after reading the request, answering nothing


@dataclass
class Scripted:
    """A real HTTP server that answers each request with the next entry of `script`
    (`(status, headers)` or DROP) and 200 `{}` once the script is spent."""

    script: list[Any]
    seen: list[tuple[float, str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    @property
    def gaps(self) -> list[float]:
        times = [t for t, *_ in self.seen]
        return [b - a for a, b in zip(times, times[1:], strict=False)]


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(*script: Any) -> Scripted:
        state = Scripted(list(script))

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                state.seen.append((time.monotonic(), self.command, self.path, dict(self.headers)))
                entry = state.script.pop(0) if state.script else (200, {})
                if entry == DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, *error = entry
                if error:
                    body = json.dumps({"error": error[0]}).encode()
                elif status >= 300:
                    body = b'{"error": {"code": "busy", "message": "try later", "details": null}}'
                elif self.path.startswith("/api/subscribers/"):
                    body = b'{"subscriberId": "x"}'
                else:
                    body = b'{"count": 0, "notifications": []}'
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = answer

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


TRIGGER = {"type": "t", "title": "t", "message": "m", "recipients": ["someone"]}


class TestRetries:
    async def test_429_and_503_wait_out_their_retry_after(
        self, scripted: Any, clients: Any
    ) -> None:
        # An HTTP date has whole seconds: 4 s ahead is 3-4 s when the client reads it, 1 s later.
        soon = format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True)
        server = scripted((429, {"Retry-After": "1"}), (503, {"Retry-After": soon}))
        herald = clients(server.url, "key", retry=FAST)
        result = await herald("trigger", **TRIGGER)
        assert result.count == 0
        assert herald.statuses == [429, 503, 200]
        assert server.gaps[0] >= 0.95  # Retry-After: 1
        assert server.gaps[1] >= 1.5  # the HTTP date, 2-3 s after the 429

    async def test_without_retry_after_it_backs_off(self, scripted: Any, clients: Any) -> None:
        server = scripted((503, {}), (503, {}))
        herald = clients(server.url, "key", retry=RetryPolicy(backoff=0.2, max_attempts=3))
        await herald("get_subscriber", "a")
        assert herald.statuses == [503, 503, 200]
        assert server.gaps[0] >= 0.15 and server.gaps[1] >= 0.3  # 0.2 then 0.4 s, +-20%

    async def test_gives_up_after_max_attempts(self, scripted: Any, clients: Any) -> None:
        server = scripted(*[(503, {"Retry-After": "0"})] * 5)
        herald = clients(server.url, "key", retry=RetryPolicy(max_attempts=3))
        with pytest.raises(ServiceUnavailable) as away:
            await herald("trigger", **TRIGGER)
        assert len(server.seen) == 3
        assert away.value.body == {
            "error": {"code": "busy", "message": "try later", "details": None}
        }
        assert (away.value.code, away.value.retry_after) == ("busy", 0)

    async def test_a_retry_after_beyond_max_wait_is_not_waited_out(
        self, scripted: Any, clients: Any
    ) -> None:
        server = scripted((429, {"Retry-After": "3600"}))
        herald = clients(server.url, "key", retry=FAST)
        started = time.monotonic()
        with pytest.raises(RateLimited) as limited:
            await herald("trigger", **TRIGGER)
        assert time.monotonic() - started < 1 and len(server.seen) == 1
        assert limited.value.retry_after == 3600

    async def test_a_dropped_connection_is_retried_only_when_safe(
        self, scripted: Any, clients: Any
    ) -> None:
        server = scripted(DROP, DROP)
        herald = clients(server.url, "key", retry=FAST)
        result = await herald("trigger", **TRIGGER, idempotency_key="k-1")  # keyed: safe
        assert result.count == 0 and len(server.seen) == 3
        assert {headers["Idempotency-Key"] for *_, headers in server.seen} == {"k-1"}
        assert all(headers["Authorization"] == "Bearer key" for *_, headers in server.seen)

        server = scripted(DROP)
        herald = clients(server.url, "key", retry=FAST)
        with pytest.raises(HeraldConnectionError):  # it may have been made: never twice
            await herald("trigger", **TRIGGER)
        assert len(server.seen) == 1

        server = scripted(DROP)
        await clients(server.url, "key", retry=FAST)("get_subscriber", "x")  # a read: safe
        assert len(server.seen) == 2

    async def test_a_retry_finding_its_first_request_running_waits_for_it(
        self, scripted: Any, clients: Any
    ) -> None:
        """The first request reached Herald but its answer was lost; the retry (same key)
        arrives while it still runs: 409 idempotency_in_flight, Retry-After: 1, then the
        answer."""
        in_flight = {"code": "idempotency_in_flight", "message": "still running"}
        server = scripted(DROP, (409, {"Retry-After": "1"}, in_flight))
        herald = clients(server.url, "key", retry=FAST)
        assert (await herald("trigger", **TRIGGER, idempotency_key="k-2")).count == 0
        assert herald.statuses == [409, 200] and len(server.seen) == 3
        assert server.gaps[1] >= 0.95

        server = scripted((409, {}, {"code": "conflict", "message": "another conflict"}))
        with pytest.raises(Conflict):  # any other 409 is the caller's to handle
            await clients(server.url, "key", retry=FAST)("trigger", **TRIGGER)
        assert len(server.seen) == 1

    async def test_a_refused_connection_is_retried_then_raised(self, clients: Any) -> None:
        herald = clients(f"http://127.0.0.1:{free_port()}", "key", retry=FAST)
        started = time.monotonic()
        with pytest.raises(HeraldConnectionError) as down:
            await herald("trigger", **TRIGGER)  # nothing was sent: safe even without a key
        assert "after 4 attempts" in str(down.value)
        assert time.monotonic() - started >= 0.05 + 0.1 + 0.2 - 0.1


# --- The shared retry loop on its own: no server, no sleeping ------------------------------------
class TestRetryLoop:
    """`exchange` is what both clients run; driven by hand here, step by step."""

    def steps(self, call: Any, outcomes: list[Any], policy: RetryPolicy = FAST) -> list[Any]:
        loop = exchange(call, policy)
        taken = [next(loop)]
        try:
            for outcome in outcomes:
                if isinstance(taken[-1], Sleep):
                    taken.append(loop.send(None))
                taken.append(loop.send(outcome))
        except StopIteration as done:
            taken.append(("returned", done.value))
        return taken

    def answer(self, call: Any, status: int, headers: dict[str, str] | None = None) -> Any:
        body = {"count": 0, "notifications": []} if status < 300 else {"error": {"code": "x"}}
        return httpx.Response(status, json=body, headers=headers, request=call.request)

    def test_a_503_then_a_201(self) -> None:
        call = Calls("http://h", "k", 5).trigger(**TRIGGER)
        busy, made = self.answer(call, 503, {"Retry-After": "2"}), self.answer(call, 201)
        taken = self.steps(call, [busy, made])
        assert [type(s).__name__ for s in taken[:-1]] == ["Send", "Sleep", "Send"]
        assert taken[1] == Sleep(2.0)
        assert taken[-1][1].count == 0

    def test_what_is_retried_after_a_broken_connection(self) -> None:
        calls = Calls("http://h", "k", 5)
        broken = httpx.ReadError("reset")
        unkeyed, keyed = calls.trigger(**TRIGGER), calls.trigger(**TRIGGER, idempotency_key="a")
        assert (unkeyed.idempotent, keyed.idempotent) == (False, True)
        assert calls.get_subscriber("a").idempotent and calls.upsert_subscriber("a").idempotent
        assert FAST.after_error(unkeyed, 1, broken) is None
        assert FAST.after_error(unkeyed, 1, httpx.ConnectError("refused")) is not None
        assert FAST.after_error(keyed, 1, broken) is not None
        assert FAST.after_error(keyed, FAST.max_attempts, broken) is None

    def test_the_request_as_sent(self) -> None:
        call = Calls("http://h/base/", "k", 5).upsert_subscriber("auth0|7", name=None, locale="fr")
        assert call.request.method == "PUT"
        assert call.request.url == "http://h/base/api/subscribers/auth0%7C7"
        assert json.loads(call.request.content) == {"name": None, "locale": "fr"}
        assert call.request.headers["authorization"] == "Bearer k"
