"""HTTP -> queue -> worker -> Socket.IO client, and what an unauthenticated socket gets."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from herald.notifications.models import InAppNotification
from herald.realtime.adapter import manager
from tests.fixtures.herald import RunningHerald
from tests.fixtures.notifications import inapp_record
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.waiting import eventually


async def next_notification(
    client: RecordingClient, notification_id: int, timeout: float = 20
) -> dict:
    """The `notification:new` with this id (an earlier login's notification may arrive too)."""
    while True:
        event = await client.next("notification:new", timeout=timeout)
        if event["id"] == notification_id:
            return event


class TestSocketDelivery:
    async def test_authenticated_socket_receives_login_notification(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        first = await herald.login(user)
        client = RecordingClient(ack=True)
        await client.connect(herald.url)
        try:
            welcome = await client.authenticate(first["sessionToken"])
            assert welcome["userId"] == user["userId"]
            assert welcome["serverId"] == herald.settings.effective_server_id

            second = await herald.login(user)
            notification_id = second["loginInAppNotification"]["notificationId"]
            event = await next_notification(client, notification_id)
            assert event["type"] == "login" and event["title"] == "New sign-in"

            async def delivered() -> InAppNotification | None:
                async with herald.herald.db() as session:
                    n = await session.get(InAppNotification, notification_id)
                return n if n and n.status == "delivered" else None

            n = await eventually(delivered)
            assert n.socket_id == welcome["socketId"]
            assert n.delivered_via == "websocket"
        finally:
            await client.close()

    async def test_connect_auth_payload_authenticates(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        login = await herald.login(user)
        client = RecordingClient()
        await client.connect(herald.url, auth={"token": login["sessionToken"]})
        try:
            assert (await client.next("auth:success"))["userId"] == user["userId"]
        finally:
            await client.close()

    async def test_ping_gets_pong(self, herald: RunningHerald) -> None:
        client = RecordingClient()
        await client.connect(herald.url)
        try:
            await client.sio.emit("ping")
            pong = await client.next("pong")
            assert pong["serverId"] == herald.settings.effective_server_id
        finally:
            await client.close()


class TestBadToken:
    async def test_bad_token_gets_auth_error_and_nothing_else(self, herald: RunningHerald) -> None:
        victim = await herald.signup()
        victim_login = await herald.login(victim)
        listener = RecordingClient()
        intruder = RecordingClient()
        await listener.connect(herald.url)
        await intruder.connect(herald.url)
        try:
            await listener.authenticate(victim_login["sessionToken"])
            await intruder.sio.emit("authenticate", {"token": "not-a-real-token"})
            error = await intruder.next("auth:error")
            assert "invalid" in error["message"]

            again = await herald.login(victim)
            wanted = again["loginInAppNotification"]["notificationId"]
            await next_notification(listener, wanted)  # the victim's own socket got it...
            await asyncio.sleep(0.3)
            assert intruder.events["notification:new"].empty()  # ...the intruder got nothing
            assert intruder.events["auth:success"].empty()
        finally:
            await listener.close()
            await intruder.close()


class TestDeliveredMeansAcknowledged:
    async def test_an_emit_nobody_acknowledges_is_a_failed_attempt_until_the_ack(
        self, herald_factory: Any
    ) -> None:
        herald: RunningHerald = await herald_factory(inapp_ack_timeout=1)
        user = await herald.member()
        client = RecordingClient()  # receives, but acknowledges only when the test says so
        await client.connect(herald.url)
        try:
            await client.authenticate(user["token"])
            login = await herald.login(user)
            nid = login["loginInAppNotification"]["notificationId"]
            event = await next_notification(client, nid)

            history = await eventually(lambda: failed_attempts(herald, nid))
            assert history[0]["error"] == "not acknowledged within 1 s"
            assert (await inapp_record(herald, nid))["status"] != "delivered"

            assert await client.sio.call("notification:ack", {"id": event["id"]}) == {
                "acked": [nid]
            }
        finally:
            await client.close()
        body = await inapp_record(herald, nid)
        assert body["status"] == "delivered"
        assert "acknowledged" in [h["status"] for h in body["deliveryHistory"]]

    async def test_the_ack_writes_one_acknowledged_and_one_delivered_entry(
        self, herald: RunningHerald
    ) -> None:
        """The ack's own statement records the delivery (the attempt that waited for it has
        nothing left to write): one entry each, in that order, naming the acking socket."""
        user = await herald.member()
        client = RecordingClient(ack=True)
        await client.connect(herald.url)
        try:
            await client.authenticate(user["token"])
            nid = (await herald.login(user))["loginInAppNotification"]["notificationId"]
            await next_notification(client, nid)
            sid = client.sio.get_sid()

            async def settled() -> list[dict[str, Any]] | None:
                body = await inapp_record(herald, nid)
                done = body["status"] == "delivered" and body["deliveryHistory"]
                return body["deliveryHistory"] if done else None

            history = await eventually(settled)
            await asyncio.sleep(0.5)  # the attempt that waited for the ack has finished
            history = (await inapp_record(herald, nid))["deliveryHistory"]
        finally:
            await client.close()
        assert [(h["status"], h["socketId"], h["deliveryMethod"]) for h in history] == [
            ("acknowledged", sid, "websocket"),
            ("delivered", sid, "websocket"),
        ]
        assert {h["attempt"] for h in history} == {1} and history[0]["queueName"] == "inapp"

    async def test_an_emit_lost_while_the_server_resubscribes_arrives_on_a_later_attempt(
        self, herald_factory: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Pub/sub keeps nothing: an emit published while the API server's subscription is
        down is lost. The attempt is not counted delivered; the next one emits again."""
        herald: RunningHerald = await herald_factory(inapp_ack_timeout=1.5)
        user = await herald.member()
        client = RecordingClient(ack=True)
        await client.connect(herald.url)
        try:
            await client.authenticate(user["token"])
            monkeypatch.setattr(manager, "RESUBSCRIBE_SECONDS", 2.5)  # a long gap, for sure
            await kill_subscriptions(herald.herald.redis)
            login = await herald.login(user)
            nid = login["loginInAppNotification"]["notificationId"]
            event = await next_notification(client, nid, timeout=30)
            assert event["id"] == nid

            async def delivered() -> dict[str, Any] | None:
                body = await inapp_record(herald, nid)
                return body if body["status"] == "delivered" else None

            body = await eventually(delivered)
        finally:
            await client.close()
        statuses = [(h["status"], h["error"]) for h in body["deliveryHistory"]]
        assert statuses[0] == ("failed", "not acknowledged within 1.5 s"), statuses
        assert statuses[-1][0] in {"delivered", "acknowledged"}, statuses


async def kill_subscriptions(redis: aioredis.Redis) -> None:
    """Cut this Herald's pub/sub connections (those on its Redis database), as a network blip
    or a Redis failover would."""
    db = int(redis.connection_pool.connection_kwargs.get("db", 0))
    for c in await redis.client_list():
        if int(c.get("sub", 0)) > 0 and int(c["db"]) == db:
            await redis.client_kill_filter(_id=c["id"])


async def failed_attempts(herald: RunningHerald, nid: int) -> list[dict[str, Any]] | None:
    history = (await inapp_record(herald, nid))["deliveryHistory"]
    return [h for h in history if h["status"] == "failed"] or None


async def test_a_caught_up_notification_is_sent_as_it_was_live(herald: RunningHerald) -> None:
    """The sign-in's backlog is built from plain rows (herald.core.driver on PostgreSQL): what
    a second socket catches up must be the very payload the first one got live, with its data
    as sent and its times timezone-aware."""
    user = await herald.member()
    data = {"order": 42, "lines": [{"sku": "é-1", "qty": 2}], "gift": None}
    first = RecordingClient(ack=False)  # gets it live and never acknowledges it
    await first.connect(herald.url)
    await first.authenticate(user["token"])
    try:
        sent = await herald.http.post(
            "/api/notifications",
            headers=herald.admin(),
            json={
                "recipients": [{"userId": user["userId"]}],
                "type": "order",
                "title": "Paid",
                "message": "m",
                "priority": "high",
                "data": data,
            },
        )
        assert sent.status_code == 201, sent.text
        notification_id = sent.json()["notifications"][0]["notificationId"]
        live = await next_notification(first, notification_id)
    finally:
        await first.close()
    second = RecordingClient(ack=True)
    await second.connect(herald.url)
    try:
        await second.authenticate(user["token"])
        caught_up = await next_notification(second, notification_id)
    finally:
        await second.close()
    assert caught_up == live
    assert caught_up["data"] == data and caught_up["priority"] == "high"
    assert datetime.fromisoformat(caught_up["createdAt"]).tzinfo is not None
    assert datetime.fromisoformat(caught_up["expiresAt"]).tzinfo is not None
