"""Subscribers keyed by the application's own ids: CRUD, bulk upsert, and the trigger."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from herald.notifications.models import EmailNotification, InAppNotification
from tests.fixtures.herald import RunningHerald
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


async def put(herald: RunningHerald, subscriber_id: str, body: dict[str, Any]) -> Any:
    return await herald.http.put(
        f"/api/subscribers/{subscriber_id}", json=body, headers=herald.admin()
    )


def fields(response: Any) -> list[str]:
    return [d["field"] for d in response.json()["error"]["details"]]


class TestCrud:
    async def test_put_creates_then_updates_and_get_reads_back(self, herald: RunningHerald) -> None:
        # One PostgreSQL database serves the whole session: an id and address of its own.
        tag = uuid.uuid4().hex[:8]
        sid, email = f"user_{tag}", f"ada-{tag}@example.com"
        created = await put(
            herald,
            sid,
            {
                "email": email.replace("ada", "Ada").replace("example", "Example"),
                "name": "Ada",
                "locale": "en-GB",
                "timezone": "Europe/London",
                "data": {"plan": "pro"},
            },
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["subscriberId"] == sid and body["email"] == email  # stored lowercased
        assert body["data"] == {"plan": "pro"} and body["timezone"] == "Europe/London"

        updated = await put(herald, sid, {"name": "Ada L."})
        assert updated.status_code == 200, updated.text
        # A field left out keeps its value.
        assert updated.json()["name"] == "Ada L." and updated.json()["email"] == email

        got = await herald.http.get(f"/api/subscribers/{sid}", headers=herald.admin())
        assert got.status_code == 200 and got.json()["name"] == "Ada L."

    async def test_unknown_is_404_naming_it(self, herald: RunningHerald) -> None:
        r = await herald.http.get("/api/subscribers/nobody-here", headers=herald.admin())
        assert r.status_code == 404 and "nobody-here" in r.json()["error"]["message"]

    async def test_bad_fields_are_422_naming_them(self, herald: RunningHerald) -> None:
        r = await put(herald, "x1", {"email": "not-an-address", "timezone": "Mars/Olympus"})
        assert r.status_code == 422
        assert set(fields(r)) == {"email", "timezone"}

    async def test_an_address_of_another_subscriber_is_409_naming_email(
        self, herald: RunningHerald
    ) -> None:
        assert (await put(herald, "a", {"email": "same@example.com"})).status_code == 201
        r = await put(herald, "b", {"email": "same@example.com"})
        assert r.status_code == 409 and fields(r) == ["email"]

    async def test_signed_up_users_are_subscribers_by_their_id(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        r = await herald.http.get(f"/api/subscribers/{user['userId']}", headers=herald.admin())
        assert r.status_code == 200, r.text
        assert r.json()["email"] == user["email"]
        # They keep an address: they sign in and get login alerts by email.
        cleared = await put(herald, str(user["userId"]), {"email": None})
        assert cleared.status_code == 422 and fields(cleared) == ["email"]

    async def test_list_pages_with_a_cursor(self, herald: RunningHerald) -> None:
        # The PostgreSQL database is shared by the session's tests: look at this test's own.
        prefix = uuid.uuid4().hex[:6]
        for i in range(5):
            assert (await put(herald, f"{prefix}-{i}", {})).status_code == 201
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            r = await herald.http.get("/api/subscribers", params=params, headers=herald.admin())
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= 2
            seen += [s["subscriberId"] for s in page["items"] if s["subscriberId"][:6] == prefix]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == [f"{prefix}-{i}" for i in range(5)]


class TestBulk:
    async def test_upserts_and_counts(self, herald: RunningHerald) -> None:
        assert (await put(herald, "b0", {"name": "old"})).status_code == 201
        r = await herald.http.post(
            "/api/subscribers/bulk",
            json={"subscribers": [{"subscriberId": f"b{i}", "name": f"n{i}"} for i in range(3)]},
            headers=herald.admin(),
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"created": 2, "updated": 1}
        got = await herald.http.get("/api/subscribers/b0", headers=herald.admin())
        assert got.json()["name"] == "n0"

    async def test_more_than_1000_is_422_naming_the_field(self, herald: RunningHerald) -> None:
        r = await herald.http.post(
            "/api/subscribers/bulk",
            json={"subscribers": [{"subscriberId": f"s{i}"} for i in range(1001)]},
            headers=herald.admin(),
        )
        assert r.status_code == 422 and fields(r) == ["subscribers"]
        first = await herald.http.get("/api/subscribers/s0", headers=herald.admin())
        assert first.status_code == 404  # all or nothing


class TestTrigger:
    async def test_by_subscriber_id_emails_them_and_unknown_ones_with_email_are_created(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        assert (await put(herald, "known-1", {"email": "known@example.com"})).status_code == 201
        r = await herald.http.post(
            "/api/notifications",
            json={
                "recipients": [
                    {"subscriberId": "known-1"},
                    {"subscriberId": "new-2", "email": "new@example.com"},
                ],
                "type": "digest",
                "title": "Your digest",
                "message": "Three new things.",
                "channels": ["email", "inapp"],
            },
            headers=herald.admin(),
        )
        assert r.status_code == 201, r.text
        assert {n["subscriberId"] for n in r.json()["notifications"]} == {"known-1", "new-2"}
        await smtp.wait_for("known@example.com")
        await smtp.wait_for("new@example.com")
        created = await herald.http.get("/api/subscribers/new-2", headers=herald.admin())
        assert created.status_code == 200 and created.json()["email"] == "new@example.com"

    async def test_unknown_subscriber_without_email_is_422_naming_it(
        self, herald: RunningHerald
    ) -> None:
        r = await herald.http.post(
            "/api/notifications",
            json={
                "recipients": [{"subscriberId": "ghost"}],
                "type": "x",
                "title": "t",
                "message": "m",
            },
            headers=herald.admin(),
        )
        assert r.status_code == 422 and fields(r) == ["recipients.0.subscriberId"]

    async def test_email_to_a_subscriber_without_address_is_422(
        self, herald: RunningHerald
    ) -> None:
        assert (await put(herald, "no-mail", {"name": "N"})).status_code == 201
        r = await herald.http.post(
            "/api/notifications",
            json={
                "recipients": [{"subscriberId": "no-mail"}],
                "type": "x",
                "title": "t",
                "message": "m",
                "channels": ["email"],
            },
            headers=herald.admin(),
        )
        assert r.status_code == 422 and fields(r) == ["recipients.0.email"]


class TestDelete:
    async def test_removes_them_with_their_inbox_and_pending_notifications(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        assert (await put(herald, "leaver", {"email": "leaver@example.com"})).status_code == 201
        smtp.fail_with = "451 4.3.0 try later"  # the email stays pending in the ladder
        r = await herald.http.post(
            "/api/notifications",
            json={
                "recipients": [{"subscriberId": "leaver"}],
                "type": "x",
                "title": "t",
                "message": "m",
                "channels": ["email", "inapp"],
            },
            headers=herald.admin(),
        )
        assert r.status_code == 201, r.text
        ids = {n["channel"]: n["notificationId"] for n in r.json()["notifications"]}

        async def refused_once() -> bool:
            return bool(smtp.refused_to("leaver@example.com"))

        await eventually(refused_once)  # the email is in the ladder, waiting to retry

        gone = await herald.http.delete("/api/subscribers/leaver", headers=herald.admin())
        assert gone.status_code == 200, gone.text
        assert gone.json() == {
            "deleted": True,
            "notificationsRemoved": 2,
            "emailsRemoved": 1,
            "inappRemoved": 1,
        }
        async with herald.herald.db() as db:
            assert await db.get(EmailNotification, ids["email"]) is None
            assert await db.get(InAppNotification, ids["inapp"]) is None
        again = await herald.http.get("/api/subscribers/leaver", headers=herald.admin())
        assert again.status_code == 404
        # The email's job, still in the retry ladder, finds no row: nothing more is tried.
        await asyncio.sleep(0.3)  # an attempt that claimed the row just before is refused
        smtp.fail_with = None
        await asyncio.sleep(1.5)  # past the test ladder's 200 ms tier delays
        assert not smtp.to("leaver@example.com")
