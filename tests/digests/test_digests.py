"""Digests against real components: Herald on a real port, the SMTP sink reading each digest
email, Socket.IO clients for the in-app side, and worker processes killed mid-window."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from herald.digests.models import Digest
from herald.digests.schedule import group_key, next_daily, parse_window
from herald.notifications.models import EmailNotification
from tests.fixtures.herald import RunningHerald
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink, digests_to, parse, text_of
from tests.fixtures.waiting import eventually


def kind() -> str:
    """A type of its own: the PostgreSQL stack shares one database across the session."""
    return f"dg.{uuid.uuid4().hex[:8]}"


async def put_rule(herald: RunningHerald, type_: str, body: dict[str, Any]) -> Any:
    return await herald.http.put(f"/api/types/{type_}/digest", json=body, headers=herald.admin())


async def trigger(
    herald: RunningHerald,
    type_: str,
    recipients: list[dict[str, Any]],
    title: str,
    *,
    data: dict[str, Any] | None = None,
    channels: tuple[str, ...] = ("email",),
) -> list[dict[str, Any]]:
    r = await herald.http.post(
        "/api/notifications",
        headers=herald.admin(),
        json={
            "type": type_,
            "title": title,
            "message": f"about {title}",
            "recipients": recipients,
            "channels": list(channels),
            "data": data or {},
        },
    )
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
        # Long enough for three triggers on a slow machine; the window starts at the first.
        assert (await put_rule(herald, type_, {"window": "5s"})).status_code == 200
        member = await herald.member()
        client = RecordingClient(ack=True)
        await client.connect(herald.url, auth={"token": member["token"]})
        try:
            created = []
            for n in range(3):
                created += await trigger(
                    herald,
                    type_,
                    [{"userId": member["userId"]}],
                    f"Item {n}",
                    channels=("inapp", "email"),
                )
            held = [c for c in created if c["channel"] == "email"]
            assert [c["status"] for c in held] == ["held"] * 3
            # The window's close job waits in the digests queue, counted with the others.
            queues = await herald.http.get("/api/ops/queues", headers=herald.admin())
            assert queues.json()["queues"]["digests"]["delayed"] >= 1
            assert not digests_to(smtp, member["email"], type_)  # the window is still open
            # In-app is not digested: each arrives on the socket by itself. (Waited for after
            # the triggers: on a loaded machine three round trips to the socket could outlast
            # the window. Concurrent deliveries may arrive in any order.)
            live = [await client.next("notification:new") for _ in range(3)]
            assert sorted(n["title"] for n in live) == ["Item 0", "Item 1", "Item 2"]
        finally:
            await client.close()

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
        r = await put_rule(herald, type_, {"window": "5s", "groupBy": "data.projectId"})
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
            # Items are "- <title>" lines (the unsubscribe token's base64 may hold any pair).
            assert any("- P1 first" in t and "- P1 second" in t and "- P2" not in t for t in bodies)
            assert any("- P2 only" in t and "- P1" not in t for t in bodies)
        digests = await eventually(lambda: _at_least(closed_digests(herald, type_), 4))
        assert sorted((d.group_key, d.status) for d in digests) == [
            ("1", "sent"),
            ("1", "sent"),
            ("2", "sent"),
            ("2", "sent"),
        ]

    async def test_windows_open_when_postgresql_plans_statements_generically(
        self, stack: dict[str, Any], herald_factory: Any, smtp: SmtpSink
    ) -> None:
        # PostgreSQL switches a prepared statement to a generic plan (parameters not known)
        # after five runs; forcing that from the first run shows a statement that only works
        # while its parameters are visible to the planner.
        if not stack:
            pytest.skip("a PostgreSQL planner setting")
        await plan_cache_mode(stack["database_url"], "force_generic_plan")
        try:
            running: RunningHerald = await herald_factory()
            type_ = kind()
            await put_rule(running, type_, {"window": "1s"})
            sid, address = await subscriber(running)
            for n in range(2):
                [held] = await trigger(running, type_, [{"subscriberId": sid}], f"G{n}")
                assert held["status"] == "held"
            [message] = await smtp.wait_for(address)
            assert parse(message)["Subject"] == f"2 new {type_} notifications"
        finally:
            await plan_cache_mode(stack["database_url"], "auto")

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


async def plan_cache_mode(url: str, mode: str) -> None:
    """Set how PostgreSQL plans prepared statements, for connections made from now on."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            name = await conn.scalar(text("SELECT current_database()"))
            await conn.execute(text(f'ALTER DATABASE "{name}" SET plan_cache_mode = {mode}'))
    finally:
        await engine.dispose()


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

    async def test_concurrent_puts_of_a_new_type_all_succeed(self, herald: RunningHerald) -> None:
        type_ = kind()
        answers = await asyncio.gather(
            *(put_rule(herald, type_, {"window": f"{n}m"}) for n in range(1, 6))
        )
        assert [r.status_code for r in answers] == [200] * 5, [r.text for r in answers]

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
                "/api/ops/api-keys",
                json={"name": "k", "scopes": list(scopes)},
                headers=herald.admin(),
            )
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
            datetime(2026, 10, 24, 7, 0, tzinfo=UTC),
            25 * 3600,
        )
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
        # The next 08:00 on the subscriber's clock (Tokyo), within a day of the trigger.
        assert d.closes_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") == "08:00"
        assert before < d.closes_at <= before + timedelta(days=1)


def _titles(messages: list[EmailMessage]) -> list[str]:
    """Every item title listed in these digest emails."""
    return [line[2:] for m in messages for line in text_of(m).splitlines() if line.startswith("- ")]


async def _carried(herald: RunningHerald, type_: str) -> dict[int, list[int]]:
    """Each closed digest of the type and the email ids it carried."""
    async with herald.herald.db() as session:
        rows = await session.execute(
            select(EmailNotification.digest_id, EmailNotification.id)
            .where(EmailNotification.type == type_)
            .order_by(EmailNotification.id)
        )
        out: dict[int, list[int]] = {}
        for digest_id, nid in rows:
            out.setdefault(digest_id or 0, []).append(nid)  # 0: not carried (yet)
        return out


class TestExactlyOnce:
    async def test_two_worker_processes_one_killed_mid_window_send_one_digest_each(
        self, herald_factory: Any, smtp: SmtpSink, tmp_path: Path
    ) -> None:
        api: RunningHerald = await herald_factory(workers=False)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HERALD_TEST")},
            "DATABASE_URL": api.settings.effective_database_url,
            "REDIS_URL": api.herald.redis_url,
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
            "HERALD_JOB_LOCK_MS": "1500",
            "HERALD_STALLED_INTERVAL_MS": "500",
            "HERALD_RECONCILE_INTERVAL": "0.5",
            "HERALD_RECONCILE_GRACE": "1",
            "HERALD_LOG_LEVEL": "warning",
        }

        def start_worker(n: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "herald", "worker"],
                env={**env, "HERALD_DATA_DIR": str(tmp_path / f"worker-{n}")},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        type_ = kind()
        await put_rule(api, type_, {"window": "2s"})
        people = [await subscriber(api) for _ in range(4)]
        workers = [start_worker(1), start_worker(2)]
        try:
            # Windows opened a second apart, so closes are due before, at and after the kill.
            for round_ in range(3):
                for i, (sid, _) in enumerate(people):
                    await trigger(api, type_, [{"subscriberId": sid}], f"{sid} #{round_}")
                    if round_ == 0 and i % 2:
                        await asyncio.sleep(0.5)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(10)
            for _, address in people:
                await smtp.wait_for(address, timeout=60)
            await asyncio.sleep(3)  # a second digest for a window would have come by now
            for sid, address in people:
                [message] = digests_to(smtp, address, type_)
                assert sorted(_titles([message])) == [f"{sid} #{r}" for r in range(3)]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
                    w.wait(30)
        closed = await closed_digests(api, type_)
        assert sorted(d.status for d in closed) == ["sent"] * 4

    async def test_closing_while_notifications_arrive_loses_and_repeats_nothing(
        self, herald_factory: Any, smtp: SmtpSink
    ) -> None:
        """Two Herald instances on one database and Redis; triggers to both while both close
        the open digest as fast as they can: every email is carried by exactly one digest."""
        first: RunningHerald = await herald_factory(reconcile_interval=0.5, reconcile_grace=1)
        second: RunningHerald = await herald_factory(
            database_url=first.settings.effective_database_url,
            redis_url=first.herald.redis_url,
            reconcile_interval=0.5,
            reconcile_grace=1,
        )
        type_ = kind()
        await put_rule(first, type_, {"window": "1s"})
        second.herald.digests.rules.forget()
        sid, address = await subscriber(first)
        stop = asyncio.Event()
        closes: list[str] = []

        async def hammer(running: RunningHerald) -> None:
            while not stop.is_set():
                async with running.herald.db() as session:
                    open_ids = list(
                        await session.scalars(
                            select(Digest.id).where(Digest.type == type_, Digest.status == "open")
                        )
                    )
                for digest_id in open_ids:
                    closes.append(await running.herald.digests.close(digest_id))
                await asyncio.sleep(0.01)

        hammers = [asyncio.create_task(hammer(r)) for r in (first, second)]
        sent: list[int] = []
        try:
            for n in range(40):
                via = (first, second)[n % 2]
                [made] = await trigger(via, type_, [{"subscriberId": sid}], f"n{n}")
                sent.append(made["notificationId"])
                await asyncio.sleep(0.03)
        finally:
            stop.set()
            await asyncio.gather(*hammers)

        async def settled() -> dict[int, list[int]] | None:
            carried = await _carried(first, type_)
            return None if 0 in carried else carried

        carried = await eventually(settled, timeout=30)
        assert sorted(i for ids in carried.values() for i in ids) == sorted(sent)
        assert "closed" in closes  # the two closers did race
        digests = await eventually(lambda: _all_closed(first, type_))
        by_id = {d.id: d for d in digests}
        assert all(by_id[d].status == "sent" for d in carried)
        emails = sorted(by_id[d].email_id or 0 for d in carried)
        assert len(set(emails)) == len(carried)  # one email per digest
        await eventually(lambda: _count_at_least(smtp, address, type_, len(carried)))
        await asyncio.sleep(1.5)
        messages = digests_to(smtp, address, type_)
        assert len(messages) == len(carried)
        assert sorted(_titles(messages)) == sorted(f"n{n}" for n in range(40))


async def _all_closed(herald: RunningHerald, type_: str) -> list[Digest] | None:
    async with herald.herald.db() as session:
        rows = list(await session.scalars(select(Digest).where(Digest.type == type_)))
    return rows if rows and all(d.status != "open" for d in rows) else None


async def _count_at_least(smtp: SmtpSink, address: str, type_: str, count: int) -> bool:
    await asyncio.sleep(0)
    return len(digests_to(smtp, address, type_)) >= count


class TestSweep:
    async def test_a_lost_close_job_and_a_window_never_opened_are_made_up_for(
        self, herald_factory: Any, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        running: RunningHerald = await herald_factory(reconcile_interval=0.3, reconcile_grace=0.5)
        digests = running.herald.digests
        type_ = kind()
        await put_rule(running, type_, {"window": "1s"})
        (lost, lost_mail), (orphan, orphan_mail) = (
            await subscriber(running),
            await subscriber(running),
        )

        # Redis lost the close job: the sweep closes the digest once it is overdue.
        await trigger(running, type_, [{"subscriberId": lost}], "job lost")
        async with running.herald.db() as session:
            [d] = (await session.scalars(select(Digest).where(Digest.type == type_))).all()
        assert await running.herald.queues.get("digests").remove(f"digest-{d.id}") == 1

        # The process died between committing the held email and opening its window.
        async def died(_: Any) -> None:
            return None

        monkeypatch.setattr(digests, "opened", died)
        [n] = await trigger(running, type_, [{"subscriberId": orphan}], "never opened")
        monkeypatch.undo()
        assert n["status"] == "held"

        for address, title in ((lost_mail, "job lost"), (orphan_mail, "never opened")):
            await smtp.wait_for(address, timeout=30)
            assert _titles(digests_to(smtp, address, type_)) == [title]


class TestSubscriberDeleted:
    async def test_a_subscriber_with_an_open_digest_can_be_deleted(
        self, herald: RunningHerald
    ) -> None:
        type_ = kind()
        await put_rule(herald, type_, {"window": "1h"})
        sid, _ = await subscriber(herald)
        await trigger(herald, type_, [{"subscriberId": sid}], "held")
        r = await herald.http.delete(f"/api/subscribers/{sid}", headers=herald.admin())
        assert r.status_code == 200, r.text
        assert r.json()["emailsRemoved"] == 1
        async with herald.herald.db() as session:
            left = await session.scalars(select(Digest).where(Digest.type == type_))
            assert left.all() == []
