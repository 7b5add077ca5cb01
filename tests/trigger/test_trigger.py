"""The generic trigger, POST /api/notifications: many recipients, both channels, templates."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

from herald.notifications.models import EmailNotification, InAppNotification
from tests.fixtures.herald import RunningHerald
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


async def trigger(herald: RunningHerald, body: dict[str, Any], **kw: Any) -> Any:
    return await herald.http.post(
        "/api/notifications", json=body, headers=kw.pop("headers", herald.admin()), **kw
    )


class TestTrigger:
    async def test_many_recipients_both_channels(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        alice, bob = await herald.member(), await herald.member()
        client = RecordingClient()
        await client.connect(herald.url)
        try:
            await client.authenticate(alice["token"])
            r = await trigger(
                herald,
                {
                    "recipients": [{"userId": alice["userId"]}, {"userId": bob["userId"]}],
                    "type": "announcement",
                    "title": "Maintenance <tonight>",
                    "message": "We will be down 10 minutes.",
                    "channels": ["email", "inapp"],
                    "priority": "high",
                    "data": {"window": "22:00-22:10"},
                },
            )
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["count"] == 4
            by = {(n["userId"], n["channel"]): n for n in body["notifications"]}
            assert set(by) == {
                (alice["userId"], "email"),
                (alice["userId"], "inapp"),
                (bob["userId"], "email"),
                (bob["userId"], "inapp"),
            }
            for n in body["notifications"]:
                assert n["jobId"] == f"{n['channel']}-{n['notificationId']}"
            event = await client.next("notification:new", timeout=20)
        finally:
            await client.close()
        assert event["id"] == by[(alice["userId"], "inapp")]["notificationId"]
        assert event["type"] == "announcement" and event["priority"] == "high"
        assert event["data"] == {"window": "22:00-22:10"}

        envelope = (await smtp.wait_for(bob["email"], count=2))[-1]  # welcome, then this
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert message["Subject"] == "Announcement: Maintenance <tonight>"
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "Maintenance &lt;tonight&gt;" in html

        async with herald.herald.db() as db:
            stored = await db.get(InAppNotification, by[(bob["userId"], "inapp")]["notificationId"])
            email = await db.get(EmailNotification, by[(bob["userId"], "email")]["notificationId"])
        assert stored is not None and stored.priority == "high" and stored.title.startswith("Main")
        assert email is not None and email.type == "announcement"

    async def test_email_to_an_address_without_account_uses_generic_template(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        r = await trigger(
            herald,
            {
                "recipients": [{"email": "guest@example.com"}],
                "type": "order_shipped",
                "title": "Your order shipped",
                "message": "It is on its way.",
                "channels": ["email"],
            },
        )
        assert r.status_code == 201, r.text
        [created] = r.json()["notifications"]
        assert created["channel"] == "email" and created["email"] == "guest@example.com"
        [envelope] = await smtp.wait_for("guest@example.com")
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert message["Subject"] == "Your order shipped"
        assert "It is on its way." in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    async def test_default_channel_is_inapp(self, herald: RunningHerald) -> None:
        alice = await herald.member()
        r = await trigger(
            herald,
            {
                "recipients": [{"userId": alice["userId"]}],
                "type": "reminder",
                "title": "t",
                "message": "m",
            },
        )
        assert [n["channel"] for n in r.json()["notifications"]] == ["inapp"]

    async def test_bad_input_names_the_field(self, herald: RunningHerald) -> None:
        alice = await herald.member()
        ok = {
            "recipients": [{"userId": alice["userId"]}],
            "type": "x",
            "title": "t",
            "message": "m",
        }
        cases = [
            ({**ok, "recipients": []}, "recipients"),
            ({**ok, "recipients": [{"userId": 99_999_999}]}, "recipients.0.userId"),
            ({**ok, "recipients": [{"email": "a@example.com"}]}, "recipients.0.userId"),
            ({**ok, "recipients": [{}]}, "recipients.0"),
            ({**ok, "type": "Bad Type"}, "type"),
            ({**ok, "channels": ["sms"]}, "channels.0"),
            ({**ok, "priority": "whenever"}, "priority"),
            ({**ok, "title": ""}, "title"),
            ({**ok, "message": "nul\u0000byte"}, "message"),
        ]
        for body, field in cases:
            r = await trigger(herald, body)
            assert r.status_code == 422, (body, r.text)
            assert [d["field"] for d in r.json()["error"]["details"]] == [field], body

    async def test_needs_the_admin_token(self, herald: RunningHerald) -> None:
        alice = await herald.member()
        body = {
            "recipients": [{"userId": alice["userId"]}],
            "type": "x",
            "title": "t",
            "message": "m",
        }
        assert (await trigger(herald, body, headers={})).status_code == 401
        assert (await trigger(herald, body, headers=alice["auth"])).status_code == 403

    async def test_rows_are_committed_and_delivered_by_the_workers(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        r = await trigger(
            herald,
            {
                "recipients": [{"email": f"r{i}@example.com"} for i in range(5)],
                "type": "x",
                "title": "Hello",
                "message": "Hi",
                "channels": ["email"],
            },
        )
        ids = [n["notificationId"] for n in r.json()["notifications"]]

        async def all_delivered() -> bool:
            async with herald.herald.db() as db:
                rows = [await db.get(EmailNotification, i) for i in ids]
            return all(n is not None and n.status == "delivered" for n in rows)

        await eventually(all_delivered)


class TestFastPath:
    """The trigger's fast path (herald.trigger.endpoints.TriggerFastPath) answers as the
    FastAPI route does: the same status, headers that matter and body shape."""

    async def test_same_answers_as_the_routed_path(
        self, herald: RunningHerald, monkeypatch: Any
    ) -> None:
        from herald.trigger.endpoints import TriggerFastPath

        alice = await herald.member()
        ok = {
            "recipients": [{"userId": alice["userId"]}, {"email": "x@example.com"}],
            "type": "digest",
            "title": "t",
            "message": "m",
            "channels": ["email"],
        }
        unknown = {**ok, "recipients": [{"userId": 987_654_321}]}
        answers = []
        for path in (TriggerFastPath.PATH, "/nowhere"):  # "/nowhere": every request routed
            monkeypatch.setattr(TriggerFastPath, "PATH", path)
            answers.append([await trigger(herald, body) for body in (ok, unknown)])
        (fast_ok, fast_unknown), (routed_ok, routed_unknown) = answers
        assert fast_ok.status_code == routed_ok.status_code == 201
        assert fast_ok.headers["content-type"] == routed_ok.headers["content-type"]
        assert "x-request-id" in fast_ok.headers and "x-served-by" in fast_ok.headers
        strip = [
            {k: v for k, v in n.items() if k not in ("notificationId", "jobId")}
            for n in fast_ok.json()["notifications"]
        ]
        assert strip == [
            {k: v for k, v in n.items() if k not in ("notificationId", "jobId")}
            for n in routed_ok.json()["notifications"]
        ]
        assert fast_ok.json()["count"] == 2
        assert fast_unknown.status_code == routed_unknown.status_code == 422
        assert fast_unknown.content == routed_unknown.content
