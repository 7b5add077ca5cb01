"""HTTP -> queue -> worker -> Socket.IO client, and what an unauthenticated socket gets."""

from __future__ import annotations

import asyncio

from herald.notifications.models import InAppNotification
from tests.conftest import RunningHerald, eventually
from tests.realtime_client import RecordingClient


async def next_notification(client: RecordingClient, notification_id: int) -> dict:
    """The `notification:new` with this id (an earlier login's notification may arrive too)."""
    while True:
        event = await client.next("notification:new", timeout=20)
        if event["id"] == notification_id:
            return event


class TestSocketDelivery:
    async def test_authenticated_socket_receives_login_notification(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        first = await herald.login(user)
        client = RecordingClient()
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
