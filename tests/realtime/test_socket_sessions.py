"""Sockets answer to the session they authenticated with, answer every event (bad input too),
say nothing before the connection is confirmed, and record the transport they really use."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from sqlalchemy import update

from herald.accounts.models import PasswordReset, Session
from herald.core.db import transaction, utcnow
from herald.core.security import hash_token
from herald.notifications.models import InAppNotification
from tests.fixtures.herald import RunningHerald
from tests.fixtures.realtime_client import RecordingClient, connected, drain
from tests.fixtures.waiting import eventually

BASKET = {"items": [{"name": "Tea", "quantity": 1, "unitAmount": 350}]}


def watch_disconnect(client: RecordingClient) -> asyncio.Event:
    gone = asyncio.Event()
    client.sio.on("disconnect", lambda *_: gone.set())
    return gone


async def live_notification(herald: RunningHerald, user: dict[str, Any]) -> int:
    """A login: its in-app notification goes through the worker to connected sockets."""
    return int((await herald.login(user))["loginInAppNotification"]["notificationId"])


class TestEndedSessionsLoseTheirSockets:
    async def test_logout_everywhere_disconnects_sockets_on_every_server(
        self, herald_factory: Any
    ) -> None:
        server_a: RunningHerald = await herald_factory()
        shared = {
            "database_url": server_a.settings.effective_database_url,
            "redis_url": server_a.herald.redis_url,
        }
        server_b: RunningHerald = await herald_factory(workers=False, **shared)
        user = await server_a.member()
        on_a = await connected(server_a, user["token"])
        on_b = await connected(server_b, user["token"])
        gone_a, gone_b = watch_disconnect(on_a), watch_disconnect(on_b)

        logout = await server_a.http.delete("/api/session?all=true", headers=user["auth"])
        assert logout.status_code == 200 and logout.json()["sessionsEnded"] == 1
        await asyncio.wait_for(gone_a.wait(), 10)
        await asyncio.wait_for(gone_b.wait(), 10)  # held by the other server
        assert not on_a.sio.connected and not on_b.sio.connected

    async def test_password_reset_disconnects_the_old_sessions_sockets(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.member()
        client = await connected(herald, user["token"])
        gone = watch_disconnect(client)
        # An outstanding reset token, as the emailed link carries it.
        token = "reset-token-for-test"
        async with transaction(herald.herald.db) as session:
            now = utcnow()
            session.add(
                PasswordReset(
                    user_id=user["userId"],
                    email=user["email"],
                    token_hash=hash_token(token),
                    created_at=now,
                    expires_at=now.replace(year=now.year + 1),
                )
            )
        answer = await herald.http.post(
            "/api/reset-passwords/confirm", json={"token": token, "newPassword": "another-pass"}
        )
        assert answer.status_code == 200 and answer.json()["sessionsEnded"] == 1
        await asyncio.wait_for(gone.wait(), 10)

    async def test_every_event_rechecks_the_session(self, herald: RunningHerald) -> None:
        """A session that ended where no disconnect could reach (expiry, a Redis blip) is
        caught by the socket's next event: no ack, no markRead "all"."""
        user = await herald.signup()
        token = (await herald.login(user))["sessionToken"]
        client = await connected(herald, token)
        backlog = [e["id"] for e in await drain(client, "notification:new")]
        assert backlog
        async with transaction(herald.herald.db) as session:
            await session.execute(
                update(Session)
                .where(Session.token_hash == hash_token(token))
                .values(expires_at=utcnow())
            )
        answer = await client.sio.call("notification:markRead", "all", timeout=10)
        assert "error" in answer and "session" in answer["error"]
        async with herald.herald.db() as session:
            row = await session.get(InAppNotification, backlog[0])
        assert row is not None and not row.is_read and row.acked_at is None
        await eventually(lambda: _disconnected(client), timeout=10)

    async def test_socket_is_disconnected_when_its_session_expires(
        self, herald_factory: Any
    ) -> None:
        herald = await herald_factory(session_ttl_hours=2 / 3600)  # two seconds
        user = await herald.member()
        client = await connected(herald, user["token"])
        gone = watch_disconnect(client)
        await asyncio.wait_for(gone.wait(), 10)

    async def test_kept_idempotent_answer_is_not_replayed_to_an_ended_session(
        self, herald: RunningHerald
    ) -> None:
        buyer = await herald.member()
        headers = {**buyer["auth"], "Idempotency-Key": "order-after-logout"}
        first = await herald.http.post("/api/purchases", json=BASKET, headers=headers)
        assert first.status_code == 201
        assert (await herald.http.delete("/api/session", headers=buyer["auth"])).status_code == 200
        again = await herald.http.post("/api/purchases", json=BASKET, headers=headers)
        assert again.status_code == 401
        assert again.json()["error"]["code"] == "invalid_token"
        assert "idempotent-replayed" not in again.headers


async def _disconnected(client: RecordingClient) -> bool:
    return not client.sio.connected


class TestEveryEventIsAnswered:
    async def test_out_of_range_and_malformed_ids_get_an_error(self, herald: RunningHerald) -> None:
        user = await herald.member()
        client = await connected(herald, user["token"])
        try:
            for event, data in [
                ("notification:markRead", 10**30),
                ("notification:markRead", {"ids": [1, -(10**30)]}),
                ("notification:ack", {"id": 10**30}),
                ("notification:ack", {"ids": list(range(1, 5000))}),
                ("notification:markRead", {"id": "1; drop table"}),
                ("notification:markRead", None),
                ("no-such-event", {"x": 1}),
            ]:
                answer = await client.sio.call(event, data, timeout=10)
                assert isinstance(answer, dict) and "error" in answer, (event, answer)
            assert await client.sio.call("notification:markRead", "all", timeout=10) == {
                "marked": []
            }  # the socket still works after all that
        finally:
            await client.close()


class TestConnectPayload:
    async def test_nothing_arrives_before_connect_and_handlers_can_ack(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        nid = await live_notification(herald, user)  # sent by catch-up on authenticate
        token = (
            await herald.http.post(
                "/api/session", json={"email": user["email"], "password": user["password"]}
            )
        ).json()["sessionToken"]
        sio = socketio.AsyncClient(reconnection=False)
        order: list[str] = []
        acked: list[Any] = []
        failures: list[BaseException] = []

        @sio.event
        async def connect() -> None:
            order.append("connect")

        @sio.on("auth:success")
        async def on_auth(data: Any) -> None:
            order.append("auth:success")

        @sio.on("notification:new")
        async def on_new(data: Any) -> None:
            order.append("notification:new")
            try:
                acked.append(await sio.call("notification:ack", {"id": data["id"]}, timeout=10))
            except BaseException as exc:  # BadNamespaceError when it came before `connect`
                failures.append(exc)

        await sio.connect(herald.url, transports=["websocket"], auth={"token": token})
        try:
            await eventually(lambda: _value(acked or failures), timeout=10)
            assert failures == []
            assert order[:3] == ["connect", "auth:success", "notification:new"]
            assert acked == [{"acked": [nid]}]
        finally:
            await sio.disconnect()
        async with herald.herald.db() as session:
            row = await session.get(InAppNotification, nid)
        assert row is not None and row.acked_at is not None


async def _value(value: Any) -> Any:
    return value


class TestTransportIsRecorded:
    async def test_polling_only_client_is_recorded_as_polling(self, herald: RunningHerald) -> None:
        user = await herald.member()
        client = RecordingClient()
        await client.sio.connect(herald.url, transports=["polling"], wait_timeout=10)
        try:
            await client.authenticate(user["token"])
            nid = await live_notification(herald, user)
            event = await client.next("notification:new", timeout=20)
            while event["id"] != nid:
                event = await client.next("notification:new", timeout=20)
            assert await client.sio.call("notification:ack", {"id": nid}) == {"acked": [nid]}
        finally:
            await client.close()
        async with herald.herald.db() as session:
            row = await session.get(InAppNotification, nid)
        assert row is not None and row.delivered_via == "polling"


class TestADisconnectForgetsTheSocket:
    async def test_its_presence_and_session_entries_go_and_the_user_is_marked_as_left(
        self, herald: RunningHerald
    ) -> None:
        """One round trip removes what a socket left in Redis: presence, its login session's
        set, and leaves the mark by which the user's next sign-in counts as a reconnection."""
        redis = herald.herald.redis
        user = await herald.member()
        client = await connected(herald, user["token"])
        sid = client.sio.get_sid()

        async def holding(pattern: str) -> list[str]:
            """The keys matching `pattern` that name the socket."""
            found = []
            async for key in redis.scan_iter(pattern):
                members = await (redis.hkeys(key) if "presence" in key else redis.smembers(key))
                if sid in members:
                    found.append(key)
            return found

        [presence_key] = await holding("herald:presence:user:*")
        assert len(await holding("herald:session:*:sockets")) == 1
        user_id = presence_key.rsplit(":", 1)[1]
        assert await redis.get(f"herald:left:{user_id}") is None

        await client.sio.disconnect()

        async def forgotten() -> bool:
            return not await holding("herald:presence:user:*") and not await holding(
                "herald:session:*:sockets"
            )

        await eventually(forgotten, timeout=10)
        window_ms = herald.settings.reconnect_window * 1000
        assert 0 < await redis.pttl(f"herald:left:{user_id}") <= window_ms
