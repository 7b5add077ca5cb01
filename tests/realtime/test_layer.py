"""The real-time layer on real processes: catch-up across reconnects, tabs kept in sync, several
API servers sharing Redis with a separate worker, presence that survives a crashed server, and
broadcasts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis.asyncio as aioredis

from herald.core.db import transaction, utcnow
from herald.core.redis import POOL_SIZE, free_port
from herald.notifications.models import InAppNotification
from herald.notifications.service import new_inapp
from herald.realtime.adapter.manager import socket_emit
from herald.realtime.server import redis_manager
from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald, bearer
from tests.fixtures.realtime_client import QUIET, RecordingClient, connected, drain
from tests.fixtures.sources import source_digest
from tests.fixtures.stacks import REDIS_URL
from tests.fixtures.waiting import eventually


async def login_notification(herald: RunningHerald, user: dict[str, Any]) -> int:
    login = await herald.login(user)
    return int(login["loginInAppNotification"]["notificationId"])


class TestCatchUp:
    async def test_reconnect_receives_missed_in_order_and_nothing_after_ack(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        token = (await herald.login(user))["sessionToken"]
        first = await connected(herald, token)
        backlog = [e["id"] for e in await drain(first, "notification:new")]
        assert backlog, "the first login's notification is caught up on connect"
        assert await first.sio.call("notification:ack", {"ids": backlog}) == {"acked": backlog}
        await first.close()

        missed = [await login_notification(herald, user) for _ in range(3)]  # user offline

        second = await connected(herald, token)
        try:
            got = [e["id"] for e in await drain(second, "notification:new", wait=2.0)]
            assert got == missed  # all three, oldest first, each once on this connection
            assert await second.sio.call("notification:ack", {"ids": missed}) == {"acked": missed}
        finally:
            await second.close()

        third = await connected(herald, token)
        try:
            assert await drain(third, "notification:new") == []
        finally:
            await third.close()
        async with herald.herald.db() as session:
            rows = [await session.get(InAppNotification, i) for i in missed]
        assert all(r and r.status == "delivered" and r.acked_at for r in rows)

    async def test_expired_notifications_are_not_caught_up(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        token = (await herald.login(user))["sessionToken"]
        running = herald.herald
        async with transaction(running.db) as session:
            stale = new_inapp(
                running.settings,
                "generic",
                user_id=user["userId"],
                username=None,
                email=None,
                title="old news",
                message="too late",
                telemetry_id=None,
            )
            stale.expires_at = utcnow() - timedelta(seconds=1)
            session.add(stale)
        await running.reconciler.run_once()
        async with running.db() as session:
            row = await session.get(InAppNotification, stale.id)
        assert row is not None and row.status == "expired"
        client = await connected(herald, token)
        try:
            ids = [e["id"] for e in await drain(client, "notification:new")]
            assert stale.id not in ids
        finally:
            await client.close()


class TestTabs:
    async def test_every_tab_receives_and_a_read_in_one_reaches_the_others(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        token = (await herald.login(user))["sessionToken"]
        tabs = [await connected(herald, token) for _ in range(2)]
        try:
            for tab in tabs:
                await drain(tab, "notification:new", wait=0.5)
            nid = await login_notification(herald, user)
            for tab in tabs:
                while (await tab.next("notification:new", timeout=20))["id"] != nid:
                    pass
            reply = await tabs[0].sio.call("notification:markRead", {"id": nid})
            assert reply == {"marked": [nid]}
            for tab in tabs:
                event = await tab.next("notifications:markedRead")
                assert event["ids"] == [nid] and event["all"] is False
            everything = await tabs[1].sio.call("notification:markRead", "all")
            assert nid not in everything["marked"]
            for tab in tabs:
                event = await tab.next("notifications:markedRead")
                assert event["all"] is True and event["unreadCount"] == 0
        finally:
            for tab in tabs:
                await tab.close()

    async def test_unauthenticated_socket_cannot_ack_or_mark(self, herald: RunningHerald) -> None:
        client = RecordingClient()
        await client.connect(herald.url)
        try:
            reply = await client.sio.call("notification:markRead", "all")
            assert reply == {"error": "authenticate first"}
            assert (await client.next("auth:error"))["message"] == "authenticate first"
            assert await client.sio.call("notification:ack", 1) == {"error": "authenticate first"}
        finally:
            await client.close()

    async def test_bad_ids_are_refused(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        client = await connected(herald, (await herald.login(user))["sessionToken"])
        try:
            assert "error" in await client.sio.call("notification:markRead", {"ids": ["x"]})
            assert "error" in await client.sio.call("notification:ack", "all")
        finally:
            await client.close()


class TestAcrossServers:
    async def test_two_api_servers_and_a_worker_process(
        self, herald_factory: Any, tmp_path: Path
    ) -> None:
        server_a: RunningHerald = await herald_factory(workers=False)
        shared = {
            "database_url": server_a.settings.effective_database_url,
            "redis_url": server_a.herald.redis_url,
        }
        server_b: RunningHerald = await herald_factory(workers=False, **shared)
        worker = start_worker(tmp_path, server_a)
        try:
            user = await server_a.signup()
            token = (await server_a.login(user))["sessionToken"]
            tab_b = await connected(server_b, token)
            tab_a = await connected(server_a, token)
            await drain(tab_b, "notification:new", wait=0.5)
            await drain(tab_a, "notification:new", wait=0.5)

            nid = await login_notification(server_a, user)  # triggered through A
            event = await tab_b.next("notification:new", timeout=30)  # arrives on B
            while event["id"] != nid:
                event = await tab_b.next("notification:new", timeout=30)

            await tab_a.sio.call("notification:markRead", {"id": nid})
            assert (await tab_b.next("notifications:markedRead"))["ids"] == [nid]

            broadcast = await server_a.http.post(
                "/api/ops/broadcast",
                json={"title": "Maintenance", "message": "at noon"},
                headers=server_a.admin(),
            )
            assert broadcast.status_code == 200 and broadcast.json()["onlineSockets"] >= 2
            for tab in (tab_a, tab_b):
                assert (await tab.next("notification:broadcast"))["title"] == "Maintenance"
            await tab_a.close()
            await tab_b.close()
        finally:
            worker.terminate()
            worker.wait(30)


def start_worker(tmp_path: Path, api: RunningHerald) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "REDIS_"))}
    env.update(
        DATABASE_URL=api.settings.effective_database_url,
        REDIS_URL=api.herald.redis_url,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(api.settings.email_port),
        HERALD_DATA_DIR=str(tmp_path / "worker"),
        HERALD_BACKOFF_DELAY="20",
        INAPP_RETRY_1_DELAY="200",
        INAPP_RETRY_2_DELAY="200",
        HERALD_LOG_LEVEL="warning",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "herald", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class TestPresence:
    async def test_a_burst_beyond_the_redis_pool_waits_instead_of_failing(
        self, herald: RunningHerald
    ) -> None:
        """Thousands of sockets dropping at once (a load balancer restart) each clean up their
        presence; more at once than the Redis pool has connections must queue, not fail."""
        presence = herald.herald.presence
        sids = [f"burst-{i}" for i in range(POOL_SIZE * 3)]
        await asyncio.gather(*(presence.add(7, sid) for sid in sids))
        assert sorted(await presence.sockets(7)) == sorted(sids)
        await asyncio.gather(*(presence.remove(7, sid) for sid in sids))
        assert await presence.sockets(7) == []

    async def test_killed_server_leaves_no_ghost(self, herald_factory: Any, tmp_path: Path) -> None:
        beat = {"presence_heartbeat": 0.3}
        survivor: RunningHerald = await herald_factory(workers=False, **beat)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "REDIS_"))}
        env.update(
            DATABASE_URL=survivor.settings.effective_database_url,
            REDIS_URL=survivor.herald.redis_url,
            EMAIL_HOST="127.0.0.1",
            HERALD_DATA_DIR=str(tmp_path / "doomed"),
            HERALD_SERVER_ID="doomed",
            HERALD_PRESENCE_HEARTBEAT="0.3",
            HERALD_LOG_LEVEL="warning",
        )
        doomed = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-m", "herald", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"

            async def up() -> bool:
                try:
                    async with httpx.AsyncClient() as http:
                        return (await http.get(f"{url}/api/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(up, timeout=60)
            user = await survivor.signup()
            token = (await survivor.login(user))["sessionToken"]
            client = RecordingClient()
            await client.connect(url)
            assert (await client.authenticate(token))["serverId"] == "doomed"

            async def online_on(server: str) -> bool:
                body = (await connections(survivor))["users"]
                return any(s["serverId"] == server for u in body for s in u["sockets"])

            assert await online_on("doomed")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)
            await eventually(lambda: _not(online_on("doomed")), timeout=10)

            async def swept() -> bool:
                servers = {s["serverId"] for s in (await connections(survivor))["servers"]}
                return "doomed" not in servers

            await eventually(swept, timeout=10)
            assert await survivor.herald.presence.sockets(user["userId"]) == []
            await client.sio.disconnect()
        finally:
            if doomed.poll() is None:
                doomed.kill()


async def connections(herald: RunningHerald) -> dict[str, Any]:
    response = await herald.http.get(
        "/api/ops/connections", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def _not(check: Any) -> bool:
    return not await check


class TestBroadcast:
    async def test_only_authenticated_sockets_hear_broadcasts(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        member = await connected(herald, (await herald.login(user))["sessionToken"])
        stranger = RecordingClient()
        await stranger.connect(herald.url)
        try:
            response = await herald.http.post(
                "/api/ops/broadcast",
                json={"title": "Hello", "message": "all", "priority": "high", "data": {"a": 1}},
                headers=herald.admin(),
            )
            assert response.status_code == 200
            event = await member.next("notification:broadcast")
            assert event["priority"] == "high" and event["data"] == {"a": 1}
            await asyncio.sleep(QUIET)
            assert stranger.events["notification:broadcast"].empty()
            bad = await herald.http.post(
                "/api/ops/broadcast", json={"title": "", "message": "x"}, headers=herald.admin()
            )
            assert bad.status_code == 422
        finally:
            await member.close()
            await stranger.close()


class TestCompression:
    """Browsers offer per-message deflate on every WebSocket; its zlib state would double each
    socket's memory, so a server accepts it only when HERALD_WS_COMPRESSION says so."""

    @staticmethod
    async def negotiated(herald: RunningHerald) -> tuple[int, str]:
        url = f"{herald.url}/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=15) as ws:
            opened = await ws.receive_str(timeout=10)  # Engine.IO's open packet
            return ws.compress, opened[:1]

    async def test_declined_by_default(self, herald: RunningHerald) -> None:
        assert await self.negotiated(herald) == (0, "0")

    async def test_accepted_when_enabled(self, herald_factory: Any) -> None:
        herald = await herald_factory(workers=False, ws_compression=True)
        window_bits, opened = await self.negotiated(herald)
        assert window_bits > 0 and opened == "0"


class TestLeanSockets:
    """What an idle socket keeps is cut down (herald/realtime/adapter/lean_socket.py,
    herald/web/websocket.py); what a client sees must not change."""

    async def test_a_websocket_is_written_directly_keeping_no_environ_a_long_poll_through_a_queue(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        token = (await herald.login(user))["sessionToken"]
        direct = await connected(herald, token)
        polling = RecordingClient()
        await polling.sio.connect(herald.url, transports=["polling"], wait_timeout=10)
        await polling.authenticate(token)
        try:
            for client in (direct, polling):
                await drain(client, "notification:new", wait=0.5)
            nid = await login_notification(herald, user)
            for client in (direct, polling):
                while (await client.next("notification:new", timeout=20))["id"] != nid:
                    pass
            sockets = herald.herald.sio.eio.sockets
            over_websocket = sockets[direct.sio.eio.sid]
            long_polled = sockets[polling.sio.eio.sid]
            assert over_websocket._ws is not None and over_websocket._queue is None
            assert long_polled._ws is None and long_polled._queue is not None
            # python-socketio's environs (by Engine.IO session): the WebSocket's was emptied
            # once the connection was accepted, the long poll's is its first request's.
            environs = herald.herald.sio.environ
            assert environs[direct.sio.eio.sid] == {}
            assert environs[polling.sio.eio.sid]["REQUEST_METHOD"] == "GET"
        finally:
            await direct.close()
            await polling.close()

    async def test_a_server_side_disconnect_closes_the_websocket(
        self, herald: RunningHerald
    ) -> None:
        """The library's writer task closed the connection; without one, `close` does."""
        url = f"{herald.url}/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            opened = await ws.receive_str(timeout=10)  # Engine.IO's open packet
            await ws.send_str("40")
            assert (await ws.receive_str(timeout=10)).startswith("40")
            await herald.herald.sio.eio.disconnect(json.loads(opened[1:])["sid"])
            assert await ws.receive_str(timeout=10) == "1"  # Engine.IO's close packet
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    async def test_a_long_polled_clients_close_answers_its_pending_poll(
        self, herald: RunningHerald
    ) -> None:
        """The library left the pending poll waiting for its timeout (a ping interval and
        timeout: python-socketio's client took 35 s to disconnect); Socket.IO's own server
        answers it with the close packet at once."""
        base = f"{herald.url}/socket.io/?EIO=4&transport=polling"
        async with aiohttp.ClientSession() as session:
            async with session.get(base) as r:
                sid = json.loads((await r.text())[1:])["sid"]
            url = f"{base}&sid={sid}"

            async def post(body: str) -> None:
                async with session.post(url, data=body) as r:
                    assert r.status == 200, await r.text()

            async def poll() -> list[str]:
                async with session.get(url) as r:
                    return (await r.text()).split("\x1e")

            await post("40")
            assert (await poll())[0].startswith("40")  # connected
            pending = asyncio.create_task(poll())
            await asyncio.sleep(0.5)  # the poll is waiting on the server
            assert not pending.done()
            await post("1")
            async with asyncio.timeout(10):  # the poll's own timeout is 50 s here
                assert await pending == ["1"]

    async def test_a_client_that_stops_answering_pings_is_dropped_and_one_that_answers_is_not(
        self, herald_factory: Any
    ) -> None:
        """A read that waits a ping interval and its timeout (1 + 20 s here) ends the
        connection: the client is gone. One timer per socket watches this (`_read_overdue`)."""
        herald = await herald_factory(workers=False, ws_heartbeat_interval=1000)
        url = f"{herald.url}/socket.io/?EIO=4&transport=websocket"

        async def hold(ws: aiohttp.ClientWebSocketResponse, answer: bool) -> float:
            """Seconds until the server closed the connection (inf: still open after 30 s)."""
            await ws.receive_str(timeout=10)  # Engine.IO's open packet
            await ws.send_str("40")
            started = asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    async for message in ws:
                        if answer and message.data == "2":  # ping
                            await ws.send_str("3")
                    return asyncio.get_running_loop().time() - started
            return float("inf")

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url) as silent,
            session.ws_connect(url) as answering,
        ):
            dropped, kept = await asyncio.gather(hold(silent, False), hold(answering, True))
        assert 15 < dropped < 28
        assert kept == float("inf")


async def test_mailbox_hands_messages_over_in_order_and_waits_for_the_next() -> None:
    from herald.web.websocket import Mailbox

    box = Mailbox()
    assert box.empty()
    box.put_nowait(1)
    box.put_nowait(2)
    assert not box.empty()
    assert [await box.get(), await box.get()] == [1, 2]
    assert box.empty()
    waiting = asyncio.create_task(box.get())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    box.put_nowait(3)
    assert await asyncio.wait_for(waiting, 1) == 3
    cancelled = asyncio.create_task(box.get())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    box.put_nowait(4)  # a reader that gave up does not swallow the message
    assert await asyncio.wait_for(box.get(), 1) == 4


async def test_flag_holds_waiters_until_set() -> None:
    from herald.web.websocket import Flag

    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True]
    flag.clear()
    gave_up = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    gave_up.cancel()
    await asyncio.gather(gave_up, return_exceptions=True)
    assert flag._waiters == []  # a cancelled waiter is not kept
    flag.set()
    assert await asyncio.wait_for(flag.wait(), 1) is True


def test_lean_websocket_protocol_offers_what_uvicorn_uses() -> None:
    """herald/web/websocket.py swaps uvicorn's receive queue and writable event for smaller
    objects, and wsproto's handshaking connection for the open connection alone, each offering
    only what uvicorn calls today: this fails when uvicorn calls anything else on them."""
    import inspect
    import re

    from uvicorn.protocols.websockets import wsproto_impl

    source = inspect.getsource(wsproto_impl.WSProtocol)

    def used(attribute: str) -> set[str]:
        return set(re.findall(rf"self\.{attribute}\.(\w+)", source))

    assert used("queue") <= {"put_nowait", "get", "empty"}
    assert used("writable") <= {"set", "clear", "wait", "is_set"}
    assert used("conn") <= {"send", "receive_data", "events", "state"}
    assert "self.queue: asyncio.Queue" in source and "self.writable = asyncio.Event()" in source


def test_lean_engineio_socket_still_matches_the_library() -> None:
    """herald/realtime/adapter/lean_socket.py replaces some of python-engineio's socket methods with
    copies that start fewer tasks. When the library changes one of them, or stops building its
    sockets where `install` hooks in, this fails: look at the copies again (or drop them)."""
    import inspect

    from engineio import async_server, base_server
    from engineio.async_drivers import asgi

    from herald.realtime.adapter import lean_socket

    original = lean_socket.LeanSocket.__mro__[1]
    digests = {name: source_digest(getattr(original, name)) for name in lean_socket.REPLACED}
    assert digests == {
        "__init__": "8532b631a4dc815f",
        "poll": "826f58a9f3606db2",
        "send": "0437276ccba7ab09",
        "close": "faa2e93902543244",
        "schedule_ping": "fe316639159cd70d",
        "_send_ping": "67db82a704ea49d0",
        "_websocket_handler": "27f120df4d717a24",
    }
    handle_connect = inspect.getsource(async_server.AsyncServer._handle_connect)
    assert "async_socket.AsyncSocket(self, sid)" in handle_connect
    assert source_digest(lean_socket.LeanWebSocket.__mro__[1].__call__) == "abbf7a49b2256d37"
    assert "._async" in inspect.getsource(base_server.BaseServer.__init__)
    lean_socket.install()
    assert asgi._async["websocket"] is lean_socket.LeanWebSocket


async def test_the_adapter_finds_the_sockets_and_listener_where_the_libraries_keep_them() -> None:
    """herald/realtime/adapter/server.py reads python-engineio's open sessions and starts and
    stops python-socketio's Redis listener through attributes with no public API: this fails
    when either library moves them."""
    import inspect

    import socketio

    from herald.realtime.adapter import lean_socket
    from herald.realtime.adapter import server as socket_server

    if not REDIS_URL:
        pytest.skip("HERALD_TEST_REDIS_URL not set")
    lean_socket.install()
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=redis_manager(REDIS_URL))
    assert isinstance(sio.eio.sockets, dict) and socket_server.socket_count(sio) == 0
    assert sio.manager_initialized is False  # the library would start its listener lazily
    closing = inspect.signature(lean_socket.LeanSocket.close).parameters
    assert {"wait", "abort", "reason"} <= set(closing) and sio.eio.reason.SERVER_DISCONNECT
    redis = aioredis.from_url(REDIS_URL)
    try:
        await socket_server.start_listener(sio, redis)
        listener = sio.manager.thread
        assert isinstance(listener, asyncio.Task) and not listener.done()
        channel = sio.manager.channel
        assert dict(await redis.pubsub_numsub(channel))[channel.encode()] >= 1
        await socket_server.stop(sio)
        await asyncio.wait([listener], timeout=5)
        assert listener.done()
    finally:
        await redis.aclose()


async def test_an_emit_published_by_the_delivery_script_is_the_librarys_own_message() -> None:
    """The worker's delivery script publishes each emit itself
    (`realtime.adapter.manager.socket_emit`): its message must be what python-socketio's Redis
    manager publishes for the same emit, or the API servers would misread it. Fails when the
    library's message changes."""
    if not REDIS_URL:
        pytest.skip("HERALD_TEST_REDIS_URL not set")
    manager = redis_manager(REDIS_URL, write_only=True)
    listener = aioredis.from_url(REDIS_URL)
    pubsub = listener.pubsub()
    await pubsub.subscribe(manager.channel)
    try:
        data = {"id": 7, "title": 'é "quoted" \\ /', "data": {"n": [1, None]}}
        await manager.emit("notification:new", data, to="sid/1_-x", namespace="/")
        published = None
        async with asyncio.timeout(5):
            while published is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                published = message and message["data"]
    finally:
        await pubsub.aclose()
        await listener.aclose()
    channel, head = socket_emit(manager, "notification:new", data)
    assert channel == manager.channel
    assert json.loads(head + json.dumps("sid/1_-x") + "}") == json.loads(published)


async def test_answers_to_a_socket_are_not_published_for_the_other_servers(
    herald: RunningHerald,
) -> None:
    """A sign-in's answer, its caught-up notifications and a pong go to a socket of the server
    that handles them: published on Redis too, every other API server would read them for
    nothing. A user's room (other tabs, other servers) still goes through Redis."""
    user = await herald.signup()
    token = (await herald.login(user))["sessionToken"]
    running = herald.herald
    async with transaction(running.db) as session:  # enqueued nowhere: only a catch-up sends it
        waiting = new_inapp(
            running.settings,
            "generic",
            user_id=user["userId"],
            username=None,
            email=None,
            title="while away",
            message="caught up",
            telemetry_id=None,
        )
        session.add(waiting)
    listener = aioredis.from_url(running.redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(running.sio.manager.channel)
    client = await connected(herald, token)
    try:
        while (await client.next("notification:new", timeout=20))["id"] != waiting.id:
            pass
        await client.sio.emit("ping", {})
        assert "serverId" in await client.next("pong")
        r = await herald.http.post("/api/me/notifications/read-all", headers=bearer(token))
        assert r.status_code < 300, r.text
        await client.next("notifications:markedRead")
        published = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message:
                        published.append(json.loads(message["data"]))
    finally:
        await client.close()
        await pubsub.aclose()
        await listener.aclose()
    events = [m["event"] for m in published]
    assert "notifications:markedRead" in events  # to the user's room: through Redis
    assert "auth:success" not in events and "pong" not in events
    # (the worker's live deliveries of the signup's and login's notifications are published)
    assert waiting.id not in [
        m["data"][0]["id"] for m in published if m["event"] == "notification:new"
    ]
