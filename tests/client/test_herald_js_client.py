"""Herald's own JS client (`clients/js`) in Node, against a live Herald: a signed client token
(and a session token) signs the socket in, the backlog is caught up, live notifications come
once each and are acknowledged, the inbox and unread count, `markRead` over the socket and over
HTTP with read-sync to other tabs, and a dropped connection that comes back by itself."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from herald.client import sign_client_token
from tests.fixtures.herald import RunningHerald
from tests.fixtures.paths import ROOT
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.waiting import eventually

DRIVER = ROOT / "tests" / "js" / "herald_client.mjs"
CLIENT_SECRET = "test-client-token-secret-0123456789abcdef"


class NodeClient:
    """`tests/js/herald_client.mjs`: every event it prints is kept in `events`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._taken: set[int] = set()

    async def next(
        self, event: str, where: Callable[[Any], bool] = lambda _: True, timeout: float = 20
    ) -> Any:
        """The first `event` not yet returned whose data passes `where` (waiting for it)."""
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, line in enumerate(self.events):
                if i not in self._taken and line["event"] == event and where(line["data"]):
                    self._taken.add(i)
                    return line["data"]
            raw = await asyncio.wait_for(self.process.stdout.readline(), deadline - loop.time())
            assert raw, f"the JS client ended before {event!r}: {self.events}"
            self.events.append(json.loads(raw))

    def of(self, event: str) -> list[Any]:
        return [e["data"] for e in self.events if e["event"] == event]

    async def do(self, command: str, **args: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"do": command, **args}).encode() + b"\n")
        await self.process.stdin.drain()
        result = await self.next("result", lambda r: r["do"] == command)
        assert "error" not in result, result
        return result["value"]


@pytest.fixture
async def node_client() -> AsyncIterator[Any]:
    node = shutil.which("node")
    assert node, "Node.js is missing: `make test` installs it"
    assert (ROOT / "clients/js/node_modules/socket.io-client").exists(), "run `make test` (npm ci)"
    started: list[NodeClient] = []

    async def start(url: str, token: str) -> NodeClient:
        process = await asyncio.create_subprocess_exec(
            node,
            str(DRIVER),
            url,
            token,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        started.append(NodeClient(process))
        return started[-1]

    yield start
    for client in started:
        if client.process.returncode is None:
            client.process.kill()
        await client.process.wait()


async def trigger(herald: RunningHerald, recipient: dict[str, Any], title: str) -> int:
    r = await herald.http.post(
        "/api/notifications",
        json={"recipients": [recipient], "type": "comment", "title": title, "message": "m"},
        headers=herald.admin(),
    )
    assert r.status_code == 201, r.text
    return int(r.json()["notifications"][0]["notificationId"])


async def status(herald: RunningHerald, notification_id: int) -> dict[str, Any]:
    r = await herald.http.get(f"/api/notifications/inapp/{notification_id}", headers=herald.admin())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def subscriber_with_token(herald: RunningHerald) -> tuple[dict[str, Any], str]:
    ext = f"js-{uuid.uuid4().hex[:8]}"
    r = await herald.http.put(
        f"/api/subscribers/{ext}", json={"email": f"{ext}@example.com"}, headers=herald.admin()
    )
    assert r.status_code in (200, 201), r.text
    return {"subscriberId": ext}, sign_client_token(CLIENT_SECRET, ext)


async def member_with_token(herald: RunningHerald) -> tuple[dict[str, Any], str]:
    user = await herald.member()
    return {"userId": user["userId"]}, user["token"]


@pytest.mark.parametrize(
    "who", [subscriber_with_token, member_with_token], ids=["signed", "session"]
)
async def test_the_js_client_in_node(herald_factory: Any, node_client: Any, who: Any) -> None:
    herald = await herald_factory(client_token_secret=CLIENT_SECRET)
    recipient, token = await who(herald)
    waiting = await trigger(herald, recipient, "While you were away")

    client = await node_client(herald.url, token)
    await client.next("status", lambda s: s["state"] == "online")
    caught_up = await client.next("notification")
    assert (caught_up["id"], caught_up["title"]) == (waiting, "While you were away")
    await client.next("unreadCount", lambda n: n == 1)

    live = await trigger(herald, recipient, "Live one")
    assert (await client.next("notification"))["id"] == live
    await client.next("unreadCount", lambda n: n == 2)

    async def acknowledged() -> bool:
        return all([await _acked(herald, i) for i in (waiting, live)])

    await eventually(acknowledged)  # the client acked both: Herald counts them delivered

    inbox = await client.do("inbox")
    assert [i["id"] for i in inbox["items"]] == [live, waiting]
    unread = await client.do("inbox", unread=True, limit=1)
    assert (unread["total"], unread["limit"]) == (2, 1)

    # Another tab of the same subscriber, to see read-sync reach it.
    other = RecordingClient(ack=True)
    await other.connect(herald.url, auth={"token": token})
    try:
        await other.next("auth:success")
        assert await client.do("markRead", ids=[waiting]) == {"marked": [waiting]}  # socket
        read = await client.next("read")
        assert (read["ids"], read["unreadCount"]) == ([waiting], 1)
        assert (await other.next("notifications:markedRead"))["ids"] == [waiting]
        assert client.of("unreadCount")[-1] == 1
    finally:
        await other.close()


@pytest.mark.parametrize(
    "who", [subscriber_with_token, member_with_token], ids=["signed", "session"]
)
async def test_the_js_client_comes_back_and_catches_up(
    herald_factory: Any, node_client: Any, who: Any
) -> None:
    herald = await herald_factory(client_token_secret=CLIENT_SECRET)
    recipient, token = await who(herald)
    client = await node_client(herald.url, token)
    first = await client.next("status", lambda s: s["state"] == "online")

    await client.do("drop")  # the transport drops: the client reconnects by itself
    await client.next("status", lambda s: s["state"] == "reconnecting")
    back = await client.next("reconnect")
    assert back["socketId"] != first["socketId"]
    again = await client.next("status", lambda s: s["state"] == "online")
    assert again["reconnects"] == 1

    # Closed on purpose: what comes meanwhile finds nobody, and waits in the ladder.
    await client.do("close")
    await client.next("status", lambda s: s["state"] == "offline")
    missed = await trigger(herald, recipient, "Missed")

    async def tried() -> bool:
        return (await status(herald, missed))["attempts"] >= 1

    await eventually(tried)
    # Marked read over HTTP (the socket is closed) before it was ever shown here.
    assert await client.do("markRead", ids=[missed]) == {"marked": [missed]}
    assert await client.do("unreadCount") == 0

    await client.do("connect")
    caught_up = await client.next("notification")  # catch-up: nothing is lost while away
    assert (caught_up["id"], caught_up["isRead"]) == (missed, True)
    assert [n["id"] for n in client.of("notification")] == [missed]  # each id once
    await eventually(lambda: _acked(herald, missed))


async def _acked(herald: RunningHerald, notification_id: int) -> bool:
    return bool((await status(herald, notification_id))["ackedAt"])


async def test_a_token_function_renews_an_expiring_token(
    herald_factory: Any, node_client: Any
) -> None:
    """Herald ends the socket when its signed token expires; Socket.IO would stay away after
    that, but a token function gives the client a fresh token and it signs in again."""
    herald = await herald_factory(client_token_secret=CLIENT_SECRET)
    recipient, _ = await subscriber_with_token(herald)
    client = await node_client(herald.url, f"sign:{CLIENT_SECRET}:{recipient['subscriberId']}:2")
    first = await client.next("status", lambda s: s["state"] == "online")
    ended = await client.next("status", lambda s: s.get("reason") == "io server disconnect")
    assert ended["state"] == "reconnecting"
    again = await client.next("status", lambda s: s["state"] == "online", timeout=15)
    assert again["reconnects"] == 1 and again["socketId"] != first["socketId"]
    assert len(client.of("tokenSigned")) >= 2 and client.of("authError") == []
    missed = await trigger(herald, recipient, "After renewal")
    assert (await client.next("notification"))["id"] == missed


async def test_a_fixed_token_that_expires_says_so(herald_factory: Any, node_client: Any) -> None:
    herald = await herald_factory(client_token_secret=CLIENT_SECRET)
    recipient, _ = await subscriber_with_token(herald)
    token = sign_client_token(CLIENT_SECRET, recipient["subscriberId"], ttl=2)
    client = await node_client(herald.url, token)
    await client.next("status", lambda s: s["state"] == "online")
    ended = await client.next("status", lambda s: s.get("reason") == "io server disconnect")
    assert ended["state"] == "offline"
    assert "new token" in (await client.next("authError"))["message"]


async def test_a_refused_token_gets_nothing(herald_factory: Any, node_client: Any) -> None:
    herald = await herald_factory(client_token_secret=CLIENT_SECRET)
    recipient, _ = await subscriber_with_token(herald)
    await trigger(herald, recipient, "Not for a forged token")
    forged = sign_client_token(
        "a-secret-that-is-not-herald-s-0123456789", recipient["subscriberId"]
    )
    client = await node_client(herald.url, forged)
    refused = await client.next("authError")
    assert "signature" in refused["message"]
    await client.next("status", lambda s: s["state"] == "offline")
    assert await client.do("unreadCount") is None  # never signed in: no count either
    assert client.of("notification") == []


def test_the_vendored_copy_is_the_client() -> None:
    """`herald/web/static/vendor/herald-client.js` is `clients/js/src/index.js` as
    `make web-assets` copies it: only its socket.io-client import points at the vendored file."""
    source = (ROOT / "clients/js/src/index.js").read_text()
    vendored = (ROOT / "herald/web/static/vendor/herald-client.js").read_text()
    assert vendored == source.replace(
        'import { io } from "socket.io-client";', 'import { io } from "./socket.io.esm.min.js";'
    ), "run `make web-assets` and commit herald/web/static/vendor/herald-client.js"


async def test_the_js_client_in_chromium_with_a_signed_token(
    herald_factory: Any,
    contexts: Any,  # noqa: F811 - the fixture imported above
) -> None:
    """The vendored client in a real Chromium page on Herald's origin (its CSP applies), signed
    in with a token the application signed: live notifications, the inbox, markRead."""
    herald = await herald_factory(client_token_secret=CLIENT_SECRET)
    recipient, token = await subscriber_with_token(herald)
    waiting = await trigger(herald, recipient, "Before the page opened")
    page = await (await contexts()).new_page()
    await page.goto(herald.url + "/")
    await page.evaluate(
        """async (token) => {
            const { createHeraldClient } = await import("/static/vendor/herald-client.js");
            const herald = createHeraldClient({ url: location.origin, token });
            window.seen = [];
            window.unread = [];
            herald.on("notification", (n) => window.seen.push(n));
            herald.on("unreadCount", (n) => window.unread.push(n));
            window.app = herald;
            await herald.ready;
        }""",
        token,
    )
    await page.wait_for_function("() => window.seen.length === 1")
    live = await trigger(herald, recipient, "While the page is open")
    await page.wait_for_function("() => window.seen.length === 2")
    seen = await page.evaluate("window.seen.map((n) => [n.id, n.title])")
    assert seen == [[waiting, "Before the page opened"], [live, "While the page is open"]]
    await page.wait_for_function("() => window.app.unreadCount === 2")
    inbox = await page.evaluate("window.app.inbox().then((p) => p.items.map((i) => i.id))")
    assert inbox == [live, waiting]
    marked = await page.evaluate(f"window.app.markRead([{live}])")
    assert marked == {"marked": [live]}
    await page.wait_for_function("() => window.app.unreadCount === 1")
    await eventually(lambda: _acked(herald, live))


async def test_a_count_that_arrives_late_does_not_undo_a_newer_one(
    herald_factory: Any, node_client: Any
) -> None:
    """An unread-count request in flight while a read is synced: its (older) answer arrives
    last and used to overwrite the newer count (a page's badge stuck at 1 after markRead)."""
    herald = await herald_factory()
    recipient, token = await member_with_token(herald)
    waiting = await trigger(herald, recipient, "Unread")
    client = await node_client(herald.url, token)
    await client.next("notification")
    await client.next("unreadCount", lambda n: n == 1)
    await client.do("slowCounts", ms=1500)
    await client.do("refreshInBackground")  # Herald answers 1 now; the client hears it late
    assert await client.do("markRead", ids=[waiting]) == {"marked": [waiting]}
    await client.next("unreadCount", lambda n: n == 0)
    await asyncio.sleep(2.5)  # the late answer has come by now
    assert await client.do("unreadCount") == 0, client.of("unreadCount")
