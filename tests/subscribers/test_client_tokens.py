"""Signed client tokens: an application's backend vouches for its user, and the browser uses
the token on the socket and the inbox exactly as a Herald session token."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from herald.notifications.models import InAppNotification, Status
from tests.fixtures.herald import RunningHerald, bearer
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

SECRET = "an-application-secret-of-at-least-32-chars"


def sign(sub: str, *, secret: str = SECRET, ttl: float = 300, **extra: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl), **extra}, secret, "HS256")


def alg_none(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + 300)}, None, algorithm="none")


FORGED = {
    "expired": lambda sub: sign(sub, ttl=-60),
    "wrongly signed": lambda sub: sign(sub, secret="another-secret-that-is-32-chars-long!!"),
    "alg none": alg_none,
    "no exp": lambda sub: jwt.encode({"sub": sub}, SECRET, "HS256"),
    "HS512": lambda sub: jwt.encode(
        {"sub": sub, "exp": int(time.time() + 300)}, SECRET + SECRET, "HS512"
    ),
    "tampered": lambda sub: sign("someone-else")[:-4] + sign(sub)[-4:],
}


@pytest.fixture
async def app_herald(herald_factory: Any) -> RunningHerald:
    return await herald_factory(client_token_secret=SECRET)  # type: ignore[no-any-return]


async def subscriber(herald: RunningHerald, **fields: Any) -> str:
    subscriber_id = f"app-{uuid.uuid4().hex[:8]}"
    r = await herald.http.put(
        f"/api/subscribers/{subscriber_id}", json=fields, headers=herald.admin()
    )
    assert r.status_code == 201, r.text
    return subscriber_id


async def notify(herald: RunningHerald, subscriber_id: str, channels: list[str]) -> Any:
    r = await herald.http.post(
        "/api/notifications",
        json={
            "recipients": [{"subscriberId": subscriber_id}],
            "type": "comment",
            "title": "New comment",
            "message": "Grace replied.",
            "channels": channels,
        },
        headers=herald.admin(),
    )
    assert r.status_code == 201, r.text
    return {n["channel"]: n["notificationId"] for n in r.json()["notifications"]}


class TestValidToken:
    async def test_a_subscriber_gets_email_and_live_in_app_and_uses_the_inbox(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        herald = app_herald
        sid = await subscriber(herald, email=f"{uuid.uuid4().hex[:8]}@example.com")
        token = sign(sid)
        client = RecordingClient()
        await client.connect(herald.url, auth={"token": token})
        try:
            welcome = await client.next("auth:success")
            assert welcome["subscriberId"] == sid
            ids = await notify(herald, sid, ["email", "inapp"])
            event = await client.next("notification:new", timeout=20)
            assert event["id"] == ids["inapp"] and event["title"] == "New comment"
            acked = await client.sio.call("notification:ack", {"id": event["id"]}, timeout=10)
            assert acked == {"acked": [event["id"]]}
            marked = await client.sio.call("notification:markRead", {"id": event["id"]}, timeout=10)
            assert marked == {"marked": [event["id"]]}
            assert (await client.next("notifications:markedRead"))["unreadCount"] == 0
        finally:
            await client.close()
        envelope = (await smtp.wait_for(await _email_of(herald, sid)))[-1]
        assert "New comment" in envelope.original_content.decode()

        async with herald.herald.db() as db:
            n = await db.get(InAppNotification, ids["inapp"])
        assert n is not None and n.status == Status.DELIVERED and n.is_read

        # The inbox over HTTP with the same token.
        inbox = await herald.http.get("/api/me/notifications", headers=bearer(token))
        assert inbox.status_code == 200, inbox.text
        assert [i["id"] for i in inbox.json()["items"]] == [ids["inapp"]]
        count = await herald.http.get("/api/me/notifications/unread-count", headers=bearer(token))
        assert count.json() == {"unreadCount": 0}

    async def test_catch_up_on_connect_with_the_authenticate_event(
        self, app_herald: RunningHerald
    ) -> None:
        herald = app_herald
        sid = await subscriber(herald)
        ids = await notify(herald, sid, ["inapp"])  # offline: waits for them
        client = RecordingClient(ack=True)
        await client.connect(herald.url)
        try:
            await client.authenticate(sign(sid))
            event = await client.next("notification:new", timeout=20)
            assert event["id"] == ids["inapp"]
        finally:
            await client.close()

    async def test_an_unknown_subscriber_is_created_bare(self, app_herald: RunningHerald) -> None:
        herald = app_herald
        sid = f"new-{uuid.uuid4().hex[:8]}"
        r = await herald.http.get("/api/me/notifications", headers=bearer(sign(sid)))
        assert r.status_code == 200 and r.json()["items"] == []
        made = await herald.http.get(f"/api/subscribers/{sid}", headers=herald.admin())
        assert made.status_code == 200 and made.json()["email"] is None

    async def test_deleting_the_subscriber_ends_their_sockets(
        self, app_herald: RunningHerald
    ) -> None:
        herald = app_herald
        sid = await subscriber(herald)
        client = RecordingClient()
        await client.connect(herald.url, auth={"token": sign(sid)})
        try:
            await client.next("auth:success")
            gone = await herald.http.delete(f"/api/subscribers/{sid}", headers=herald.admin())
            assert gone.status_code == 200, gone.text

            async def disconnected() -> bool:
                return not client.sio.connected

            await eventually(disconnected, timeout=10)
        finally:
            await client.close()


class TestRefused:
    @pytest.mark.parametrize("kind", list(FORGED))
    async def test_on_the_socket_nothing_is_sent(
        self, app_herald: RunningHerald, kind: str
    ) -> None:
        herald = app_herald
        sid = await subscriber(herald)
        await notify(herald, sid, ["inapp"])  # a backlog catch-up would send at once
        client = RecordingClient()
        await client.connect(herald.url, auth={"token": FORGED[kind](sid)})
        try:
            refusal = await client.next("auth:error")
            assert refusal["message"]
            with pytest.raises(TimeoutError):
                await client.next("notification:new", timeout=1.0)
            assert client.events["auth:success"].empty()
            answer = await client.sio.call("notification:markRead", "all", timeout=10)
            assert "error" in answer
        finally:
            await client.close()

    @pytest.mark.parametrize("kind", list(FORGED))
    async def test_over_http_it_is_401(self, app_herald: RunningHerald, kind: str) -> None:
        sid = await subscriber(app_herald)
        r = await app_herald.http.get("/api/me/notifications", headers=bearer(FORGED[kind](sid)))
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_client_token"

    async def test_a_token_stops_working_when_it_expires(self, app_herald: RunningHerald) -> None:
        herald = app_herald
        sid = await subscriber(herald)
        client = RecordingClient()
        await client.connect(herald.url, auth={"token": sign(sid, ttl=2)})
        try:
            await client.next("auth:success")

            async def gone() -> bool:
                return not client.sio.connected

            await eventually(gone, timeout=10)  # disconnected at exp
        finally:
            await client.close()

    async def test_without_a_secret_tokens_are_refused_saying_so(
        self, herald: RunningHerald
    ) -> None:
        sid = await subscriber(herald)
        r = await herald.http.get("/api/me/notifications", headers=bearer(sign(sid)))
        assert r.status_code == 401
        assert "HERALD_CLIENT_TOKEN_SECRET" in r.json()["error"]["message"]
        client = RecordingClient()
        await client.connect(herald.url, auth={"token": sign(sid)})
        try:
            refusal = await client.next("auth:error")
            assert "HERALD_CLIENT_TOKEN_SECRET" in refusal["message"]
        finally:
            await client.close()


async def _email_of(herald: RunningHerald, sid: str) -> str:
    r = await herald.http.get(f"/api/subscribers/{sid}", headers=herald.admin())
    return r.json()["email"]  # type: ignore[no-any-return]
