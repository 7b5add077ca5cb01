"""One notification, whole: `GET /api/notifications/{channel}/{id}` and `herald notifications show`,
against the seed's EmailNotification / InAppNotification schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession

from herald.core.db import utcnow
from herald.notifications.models import (
    ATTEMPT_INSERT,
    Channel,
    InAppNotification,
    Status,
    attempt_row,
)
from herald.notifications.schemas import tracking
from herald.notifications.tracked import load_tracking
from herald.trigger import records
from tests.fixtures.herald import RunningHerald
from tests.fixtures.notifications import notify, wait_email, welcome_id
from tests.fixtures.processes import herald_cli
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

# Every field of the seed's schemas (architecture-v2.md, "Database Schema").
COMMON = {
    "type",
    "recipient",
    "status",
    "queueName",
    "attempts",
    "maxAttempts",
    "lastAttemptAt",
    "deliveredAt",
    "failedAt",
    "failureReason",
    "metadata",
    "createdAt",
    "updatedAt",
}
EMAIL = COMMON | {"subject", "content"}
INAPP = COMMON | {
    "title",
    "message",
    "priority",
    "socketId",
    "deliveredVia",
    "expiresAt",
    "isRead",
    "readAt",
}
METADATA = {"deliveryHistory", "escalationHistory", "retryHistory"}


async def record(
    herald: RunningHerald, channel: str, nid: int, headers: dict[str, str] | None = None
) -> Any:
    return await herald.http.get(
        f"/api/notifications/{channel}/{nid}", headers=headers or herald.admin()
    )


class TestEmailRecord:
    async def test_delivered_welcome_email_has_every_seed_field(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        assert user["updatedAt"]  # signups show updatedAt too
        nid = welcome_id(user)
        await wait_email(herald, nid, "delivered")
        response = await record(herald, "email", nid)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) >= EMAIL, EMAIL - set(body)
        assert set(body["metadata"]) == METADATA
        assert body["recipient"] == {
            "userId": user["userId"],
            "username": user["username"],
            "email": user["email"],
        }
        assert body["type"] == "signup" and body["status"] == "delivered"
        assert body["subject"] == f"Welcome to Herald, {user['username']}"
        assert f"<h1>Welcome, {user['username']}</h1>" in body["content"]["html"]
        assert "/verify/" in body["content"]["text"]
        assert body["queueName"] == "mail" and body["attempts"] == 1
        assert body["deliveredAt"] and body["lastAttemptAt"] and body["updatedAt"]
        assert body["metadata"]["deliveryHistory"][-1]["status"] == "delivered"
        assert body["metadata"]["retryHistory"] == []

    async def test_dead_lettered_email_shows_failure_and_histories(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "550 5.1.1 unknown user"
        nid = welcome_id(await herald.signup())
        await wait_email(herald, nid, "failed")
        body = (await record(herald, "email", nid)).json()
        assert body["failedAt"] and "550" in body["failureReason"]
        meta = body["metadata"]
        assert [e["toQueue"] for e in meta["escalationHistory"]] == ["mail-dlq"]
        assert [r["queue"] for r in meta["retryHistory"]] == ["mail"]
        assert "550" in meta["retryHistory"][0]["error"]


class TestInAppRecord:
    async def test_recipient_and_admin_see_it_others_get_404(self, herald: RunningHerald) -> None:
        alice = await herald.member()
        bob = await herald.member()
        login = await herald.login(alice)
        nid = login["loginInAppNotification"]["notificationId"]
        email_id = login["loginAlertEmail"]["notificationId"]

        mine = await record(herald, "inapp", nid, alice["auth"])
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert set(body) >= INAPP, INAPP - set(body)
        assert set(body["metadata"]) == METADATA
        assert body["recipient"]["userId"] == alice["userId"]
        assert body["recipient"]["username"] == alice["username"]
        assert body["type"] == "login" and body["priority"] and body["isRead"] is False
        assert (await record(herald, "inapp", nid)).json()["id"] == nid  # admin

        # Someone else's, an email (admin only), and a missing one all look the same.
        for channel, other, auth in (
            ("inapp", nid, bob["auth"]),
            ("email", email_id, alice["auth"]),
            ("inapp", 2**31 - 1, alice["auth"]),
        ):
            response = await record(herald, channel, other, auth)
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found"

    async def test_bad_input(self, herald: RunningHerald) -> None:
        assert (await herald.http.get("/api/notifications/inapp/1")).status_code == 401
        bad_channel = await record(herald, "sms", 1)
        assert bad_channel.status_code == 422 and "channel" in bad_channel.text
        bad_id = await record(herald, "email", 0)
        assert bad_id.status_code == 422 and "notificationId" in bad_id.text


class TestCli:
    async def test_notifications_show(self, herald: RunningHerald, smtp: SmtpSink) -> None:
        user = await herald.signup()
        nid = welcome_id(user)
        await eventually(lambda: wait_email(herald, nid, "delivered"))
        shown = await herald_cli(herald, "notifications", "show", "email", str(nid))
        assert shown.returncode == 0, shown.stderr
        body = json.loads(shown.stdout)
        assert body["recipient"]["email"] == user["email"]
        assert "/verify/" in body["content"]["text"] and body["updatedAt"]
        assert set(body["metadata"]) == METADATA
        missing = await herald_cli(herald, "notifications", "show", "inapp", "999999")
        assert missing.returncode == 1 and "no inapp notification 999999" in missing.stderr


async def test_a_block_never_lists_a_delivery_its_status_has_not_reached(
    herald_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tracking block is read in a few statements. A delivery that commits between them shows
    in both its status and its history (the reads are repeated until they agree), never in one
    of them only."""
    herald: RunningHerald = await herald_factory(workers=False)
    app = herald.herald
    user = await herald.member()
    nid = (await notify(herald, user, ["inapp"], "between two reads"))["inapp"]
    plain = AsyncSession.scalars
    delivered = False

    async def deliver_between(self: AsyncSession, *args: Any, **kwargs: Any) -> Any:
        nonlocal delivered
        found = await plain(self, *args, **kwargs)
        if not delivered:  # right after the block's first statement, as an ack would
            delivered = True
            await _deliver(app, nid)
        return found

    monkeypatch.setattr(AsyncSession, "scalars", deliver_between)
    async with app.db() as session:
        block = (await load_tracking(session, inapp_ids=[nid])).inapp(nid)
    assert delivered and block is not None
    assert [h.status for h in block.delivery_history] == [Status.DELIVERED]
    assert block.status == Status.DELIVERED


async def test_a_record_never_lists_a_delivery_its_status_has_not_reached(
    herald_factory: Any,
) -> None:
    """`GET /api/notifications/{channel}/{id}`'s record: a delivery committed after the row was
    loaded and before its trail was read shows in both its status and its history."""
    herald: RunningHerald = await herald_factory(workers=False)
    app = herald.herald
    user = await herald.member()
    nid = (await notify(herald, user, ["inapp"], "between two reads"))["inapp"]
    async with app.db() as session:
        n = await records.load(session, Channel.INAPP, nid)
        assert n is not None and n.status != Status.DELIVERED
        await _deliver(app, nid)
        out = await records.record(session, n)
    assert [h.status for h in out.metadata.delivery_history] == [Status.DELIVERED]
    assert out.status == Status.DELIVERED


async def test_a_block_of_a_loaded_row_reads_the_row_again_only_if_it_changed(
    herald_factory: Any,
) -> None:
    """A tracking block built from a row the caller loaded reads its trail and the row's stamp,
    not the whole row (a signup's or a login's answer); a row that changed meanwhile is read
    again, so the block still shows the delivery in its status and history both."""
    herald: RunningHerald = await herald_factory(workers=False)
    app = herald.herald
    user = await herald.member()
    nid = (await notify(herald, user, ["inapp"], "loaded once"))["inapp"]
    table = InAppNotification.__tablename__
    rows_read: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if f"FROM {table}" in statement and f"{table}.title" in statement:
            rows_read.append(statement)

    engine = app.engine.sync_engine
    async with app.db() as session:
        n = await records.load(session, Channel.INAPP, nid)
        assert n is not None and n.status != Status.DELIVERED
        event.listen(engine, "before_cursor_execute", count)
        try:
            block = (await tracking(session, [n]))[(Channel.INAPP, nid)]
            assert rows_read == [] and block.status == n.status
            await _deliver(app, nid)
            block = (await tracking(session, [n]))[(Channel.INAPP, nid)]
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert len(rows_read) == 1
    assert [h.status for h in block.delivery_history] == [Status.DELIVERED]
    assert block.status == Status.DELIVERED


async def _deliver(app: Any, nid: int) -> None:
    """What an ack's statement does to an in-app row: status and audit row, one transaction."""
    async with app.db() as other, other.begin():
        await other.execute(
            update(InAppNotification)
            .where(InAppNotification.id == nid)
            .values(status=Status.DELIVERED, delivered_at=utcnow())
        )
        await other.execute(
            ATTEMPT_INSERT, attempt_row(Channel.INAPP, nid, 1, Status.DELIVERED, "inapp")
        )
