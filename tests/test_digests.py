"""Digests against real components: Herald on a real port, the SMTP sink reading each digest
email, Socket.IO clients for the in-app side, and worker processes killed mid-window."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, time
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from herald.digests.models import Digest
from herald.digests.schedule import group_key, next_daily, parse_window
from herald.notifications.models import EmailNotification, Status
from tests.conftest import RunningHerald, SmtpSink, eventually
from tests.realtime_client import RecordingClient


def kind() -> str:
    """A type of its own: the PostgreSQL stack shares one database across the session."""
    return f"dg.{uuid.uuid4().hex[:8]}"


def parse(envelope: Any) -> EmailMessage:
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def digests_to(smtp: SmtpSink, address: str, type_: str) -> list[EmailMessage]:
    found = [parse(m) for m in smtp.to(address)]
    return [m for m in found if f"new {type_} notifications" in str(m["Subject"])]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


async def put_rule(herald: RunningHerald, type_: str, body: dict[str, Any]) -> Any:
    return await herald.http.put(f"/api/types/{type_}/digest", json=body, headers=herald.admin())


async def trigger(
    herald: RunningHerald, type_: str, recipients: list[dict[str, Any]], title: str,
    *, data: dict[str, Any] | None = None, channels: tuple[str, ...] = ("email",),
) -> list[dict[str, Any]]:  # fmt: skip
    r = await herald.http.post(
        "/api/notifications", headers=herald.admin(),
        json={"type": type_, "title": title, "message": f"about {title}",
              "recipients": recipients, "channels": list(channels), "data": data or {}},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["notifications"]  # type: ignore[no-any-return]


async def subscriber(herald: RunningHerald, **fields: Any) -> tuple[str, str]:
    sid = f"s-{uuid.uuid4().hex[:10]}"
    address = f"{sid}@example.com"
    r = await herald.http.put(
        f"/api/subscribers/{sid}", json={"email": address, **fields}, headers=herald.admin()
    )
    assert r.status_code == 201, r.text
    return sid, address


async def record(herald: RunningHerald, notification_id: int) -> dict[str, Any]:
    r = await herald.http.get(f"/api/notifications/email/{notification_id}", headers=herald.admin())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def closed_digests(herald: RunningHerald, type_: str) -> list[Digest]:
    async with herald.herald.db() as session:
        rows = await session.scalars(select(Digest).where(Digest.type == type_))
        return [d for d in rows if d.status != "open"]


class TestOneWindow:
    async def test_three_triggers_make_one_email_listing_all_and_inapp_stays_live(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        type_ = kind()
        assert (await put_rule(herald, type_, {"window": "2s"})).status_code == 200
        member = await herald.member()
        client = RecordingClient(ack=True)
        await client.connect(herald.url, auth={"token": member["token"]})
        try:
            created = []
            for n in range(3):
                created += await trigger(
                    herald, type_, [{"userId": member["userId"]}], f"Item {n}",
                    channels=("inapp", "email"),
                )  # fmt: skip
                # In-app is not digested: each arrives on the socket at once.
                live = await client.next("notification:new")
                assert live["title"] == f"Item {n}"
        finally:
            await client.close()
        held = [c for c in created if c["channel"] == "email"]
        assert [c["status"] for c in held] == ["held"] * 3
        assert not digests_to(smtp, member["email"], type_)  # the window is still open

        await smtp.wait_for(member["email"], count=2)  # the welcome email, then the digest
        [digest_email] = digests_to(smtp, member["email"], type_)
        assert str(digest_email["Subject"]) == f"3 new {type_} notifications"
        body = text_of(digest_email)
        for n in range(3):
            assert f"- Item {n}\n  about Item {n}" in body

        # The records: the digest email lists what it carried, each item points back.
        [d] = await eventually(lambda: closed_digests(herald, type_))
        assert d.status == "sent" and d.email_id is not None
        sent = await eventually(lambda: _delivered(herald, d.email_id))
        ids = [c["notificationId"] for c in held]
        assert sent["carried"] == ids and sent["type"] == "digest"
        for i in ids:
            item = await record(herald, i)
            assert item["status"] == "digested"
            assert item["digest"] == {"id": d.id, "status": "sent", "emailId": d.email_id}
        got = await herald.http.get(f"/api/digests/{d.id}", headers=herald.admin())
        assert got.status_code == 200, got.text
        assert got.json()["carried"] == ids and got.json()["emailId"] == d.email_id

        await asyncio.sleep(2.5)  # nothing else follows: one window, one email
        assert len(digests_to(smtp, member["email"], type_)) == 1

    async def test_group_by_splits_and_subscribers_get_their_own(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        type_ = kind()
        r = await put_rule(herald, type_, {"window": "2s", "groupBy": "data.projectId"})
        assert r.status_code == 200 and r.json()["groupBy"] == "data.projectId"
        (a, a_mail), (b, b_mail) = await subscriber(herald), await subscriber(herald)
        both = [{"subscriberId": a}, {"subscriberId": b}]
        await trigger(herald, type_, both, "P1 first", data={"projectId": 1})
        await trigger(herald, type_, both, "P2 only", data={"projectId": 2})
        await trigger(herald, type_, both, "P1 second", data={"projectId": 1})

        for address in (a_mail, b_mail):
            await smtp.wait_for(address, count=2)
            subjects = sorted(str(m["Subject"]) for m in digests_to(smtp, address, type_))
            assert subjects == [f"1 new {type_} notifications", f"2 new {type_} notifications"]
            bodies = {text_of(m) for m in digests_to(smtp, address, type_)}
            assert any("P1 first" in t and "P1 second" in t and "P2" not in t for t in bodies)
            assert any("P2 only" in t and "P1" not in t for t in bodies)
        digests = await eventually(lambda: _at_least(closed_digests(herald, type_), 4))
        assert sorted((d.group_key, d.status) for d in digests) == [
            ("1", "sent"), ("1", "sent"), ("2", "sent"), ("2", "sent"),
        ]  # fmt: skip

    async def test_a_type_without_a_rule_is_sent_at_once(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        await put_rule(herald, kind(), {"window": "1h"})  # another type's rule changes nothing
        sid, address = await subscriber(herald)
        [n] = await trigger(herald, kind(), [{"subscriberId": sid}], "Plain")
        assert n["status"] == "queued"
        [message] = await smtp.wait_for(address)
        assert parse(message)["Subject"] == "Plain"
        assert (await record(herald, n["notificationId"]))["digest"] is None


async def _delivered(herald: RunningHerald, notification_id: int) -> dict[str, Any] | None:
    found = await record(herald, notification_id)
    return found if found["status"] == "delivered" else None


async def _at_least(rows: Any, count: int) -> Any:
    found = await rows
    return found if len(found) >= count else None


class TestRules:
    async def test_put_get_delete(self, herald: RunningHerald) -> None:
        type_ = kind()
        url = f"/api/types/{type_}/digest"
        assert (await herald.http.get(url, headers=herald.admin())).status_code == 404
        r = await put_rule(herald, type_, {"dailyAt": "08:00", "groupBy": "data.team.id"})
        assert r.json() == {
            "type": type_,
            "window": None,
            "dailyAt": "08:00",
            "groupBy": "data.team.id",
        }
        r = await put_rule(herald, type_, {"window": "600s"})
        assert r.json()["window"] == "10m" and r.json()["dailyAt"] is None
        assert (await herald.http.get(url, headers=herald.admin())).json()["window"] == "10m"
        assert (await herald.http.delete(url, headers=herald.admin())).status_code == 204
        assert (await herald.http.get(url, headers=herald.admin())).status_code == 404
        assert (await herald.http.delete(url, headers=herald.admin())).status_code == 404

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "window"),
            ({"window": "10m", "dailyAt": "08:00"}, "window"),
            ({"window": "10x"}, "window"),
            ({"window": "0s"}, "window"),
            ({"window": "32d"}, "window"),
            ({"dailyAt": "25:00"}, "dailyAt"),
            ({"dailyAt": "8am"}, "dailyAt"),
            ({"window": "1m", "groupBy": "projectId"}, "groupBy"),
            ({"window": "1m", "groupBy": "data."}, "groupBy"),
        ],
    )
    async def test_invalid_rules_are_422_naming_the_field(
        self, herald: RunningHerald, body: dict[str, Any], field: str
    ) -> None:
        r = await put_rule(herald, kind(), body)
        assert r.status_code == 422, r.text
        assert [d["field"] for d in r.json()["error"]["details"]] == [field]

    async def test_ops_or_trigger_keys_may_set_rules_others_may_not(
        self, herald: RunningHerald
    ) -> None:
        async def key(*scopes: str) -> dict[str, str]:
            r = await herald.http.post(
                "/api/ops/api-keys", json={"name": "k", "scopes": list(scopes)},
                headers=herald.admin(),
            )  # fmt: skip
            return {"Authorization": f"Bearer {r.json()['key']}"}

        url = f"/api/types/{kind()}/digest"
        for scopes in (("trigger",), ("ops",)):
            r = await herald.http.put(url, json={"window": "5m"}, headers=await key(*scopes))
            assert r.status_code == 200, r.text
        r = await herald.http.put(url, json={"window": "5m"}, headers=await key("read"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "missing_scope"
        assert (await herald.http.put(url, json={"window": "5m"})).status_code == 401


class TestSchedule:
    def test_windows(self) -> None:
        assert [parse_window(w) for w in ("90s", "10m", "2h", "1d")] == [90, 600, 7200, 86400]

    def test_daily_time_follows_the_local_clock_across_dst(self) -> None:
        london, at = ZoneInfo("Europe/London"), time(8, 0)
        # The evening before the spring change (29 March 2026): 08:00 BST is 07:00 UTC.
        before = next_daily(datetime(2026, 3, 28, 20, 0, tzinfo=UTC), at, london)
        assert before == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
        # The day before: 08:00 GMT is 08:00 UTC, and the two are 23 hours apart.
        earlier = next_daily(datetime(2026, 3, 27, 20, 0, tzinfo=UTC), at, london)
        assert earlier == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
        assert (before - earlier).total_seconds() == 23 * 3600
        # Autumn (25 October 2026): 25 hours from Saturday's to Sunday's.
        sat = next_daily(datetime(2026, 10, 24, 1, 0, tzinfo=UTC), at, london)
        sun = next_daily(sat, at, london)
        assert (sat, (sun - sat).total_seconds()) == (
            datetime(2026, 10, 24, 7, 0, tzinfo=UTC), 25 * 3600,
        )  # fmt: skip
        # Not yet 08:00 local today: today's, in the subscriber's zone, not UTC's.
        tokyo = next_daily(datetime(2026, 6, 1, 22, 30, tzinfo=UTC), at, ZoneInfo("Asia/Tokyo"))
        assert tokyo == datetime(2026, 6, 1, 23, 0, tzinfo=UTC)  # 08:00 JST on 2 June

    def test_a_time_in_the_spring_gap_and_one_that_happens_twice(self) -> None:
        new_york = ZoneInfo("America/New_York")
        # 02:30 does not exist on 8 March 2026 (02:00 -> 03:00): it goes out at 03:30 EDT.
        gap = next_daily(datetime(2026, 3, 8, 5, 0, tzinfo=UTC), time(2, 30), new_york)
        assert gap == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
        assert gap.astimezone(new_york).strftime("%H:%M %Z") == "03:30 EDT"
        # 01:30 happens twice on 1 November 2026: the first one (EDT).
        twice = next_daily(datetime(2026, 11, 1, 4, 0, tzinfo=UTC), time(1, 30), new_york)
        assert twice == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)

    def test_group_keys(self) -> None:
        assert group_key("data.projectId", {"projectId": 7}) == "7"
        assert group_key("data.team.id", {"team": {"id": "t1"}}) == "t1"
        assert group_key("data.projectId", {}) == ""
        assert group_key(None, {"projectId": 7}) == ""


class TestDailyDigest:
    async def test_a_daily_rule_closes_at_the_subscribers_local_time(
        self, herald: RunningHerald
    ) -> None:
        type_ = kind()
        await put_rule(herald, type_, {"dailyAt": "08:00"})
        sid, _ = await subscriber(herald, timezone="Asia/Tokyo")
        before = datetime.now(UTC)
        await trigger(herald, type_, [{"subscriberId": sid}], "Morning news")
        async with herald.herald.db() as session:
            [d] = (await session.scalars(select(Digest).where(Digest.type == type_))).all()
        assert d.status == "open"
        assert d.closes_at == next_daily(before, time(8, 0), ZoneInfo("Asia/Tokyo")) or (
            d.closes_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") == "08:00"
        )
        assert d.closes_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") == "08:00"
