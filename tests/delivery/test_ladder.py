"""The retry ladder, error classes, the audit trail and dead-letter review, on a real SMTP server.

Tier delays come from the same settings a user sets (RETRY_1_DELAY, ...), shortened by the
fixtures to 200 ms, with a 20 ms backoff base inside a tier.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from herald.core.db import transaction
from herald.notifications.models import Channel, EmailNotification
from herald.notifications.service import new_email
from tests.fixtures.herald import RunningHerald
from tests.fixtures.notifications import email_status, wait_email, welcome_id
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


class TestTransientFailures:
    async def test_451_climbs_to_retry_1_then_delivers(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "451 4.3.0 greylisted, try later"
        user = await herald.signup()
        nid = welcome_id(user)

        async def escalated() -> dict[str, Any] | None:
            body = await email_status(herald, nid)
            return body if body["escalationHistory"] else None

        body = await eventually(escalated)
        smtp.fail_with = None
        body = await wait_email(herald, nid, "delivered")

        [escalation] = body["escalationHistory"]
        assert (escalation["fromQueue"], escalation["toQueue"]) == ("mail", "mail-retry-1")
        assert escalation["attempts"] == 3 and "451" in escalation["reason"]
        history = body["deliveryHistory"]
        assert [(h["queueName"], h["status"]) for h in history[:3]] == [("mail", "failed")] * 3
        assert history[-1]["status"] == "delivered"
        assert history[-1]["queueName"] in {"mail-retry-1", "mail-retry-2"}
        assert [h["attempt"] for h in history] == list(range(1, len(history) + 1))
        assert body["attempts"] == len(history) and body["maxAttempts"] == 8
        assert len(body["retryHistory"]) == len(history) - 1
        assert len(smtp.to(user["email"])) == 1

    async def test_451_forever_ends_in_the_dlq_after_eight_attempts(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "451 4.3.0 try later"
        begun = time.monotonic()
        user = await herald.signup()
        body = await wait_email(herald, welcome_id(user), "failed")
        elapsed = time.monotonic() - begun
        print(f"first failure to DLQ with test delays: {elapsed:.2f}s")

        assert body["queueName"] == "mail-dlq" and body["attempts"] == 8
        assert body["failedAt"] and "451" in body["failureReason"]
        assert [(e["fromQueue"], e["toQueue"]) for e in body["escalationHistory"]] == [
            ("mail", "mail-retry-1"),
            ("mail-retry-1", "mail-retry-2"),
            ("mail-retry-2", "mail-dlq"),
        ]
        per_queue = [h["queueName"] for h in body["deliveryHistory"]]
        assert per_queue == ["mail"] * 3 + ["mail-retry-1"] * 3 + ["mail-retry-2"] * 2
        assert len(smtp.refused_to(user["email"])) == 8

        failed = await herald.http.get("/api/signups/welcome-emails/failed", headers=herald.admin())
        assert failed.status_code == 200
        assert user["userId"] in [i["userId"] for i in failed.json()["items"]]
        queues = (await herald.http.get("/api/ops/queues", headers=herald.admin())).json()
        # At least this one: an earlier test's unsent rows may have ended there too.
        assert queues["queues"]["mail-dlq"]["waiting"] >= 1
        listed = await herald.http.get("/api/ops/dlq/email", headers=herald.admin())
        assert welcome_id(user) in [d["notificationId"] for d in listed.json()["items"]]


class TestPermanentFailures:
    async def test_550_goes_to_dlq_at_once_and_replay_delivers(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "550 5.1.1 no such mailbox"
        user = await herald.signup()
        nid = welcome_id(user)
        body = await wait_email(herald, nid, "failed")
        assert body["attempts"] == 1 and len(smtp.refused_to(user["email"])) == 1
        assert body["queueName"] == "mail-dlq" and "550" in body["failureReason"]
        [escalation] = body["escalationHistory"]
        assert (escalation["fromQueue"], escalation["toQueue"]) == ("mail", "mail-dlq")

        listed = await herald.http.get("/api/ops/dlq/email?type=signup", headers=herald.admin())
        assert nid in [d["notificationId"] for d in listed.json()["items"]]

        smtp.fail_with = None  # the mailbox was fixed
        replay = await herald.http.post(
            "/api/ops/dlq/email/replay",
            json={"ids": [nid], "note": "mailbox fixed"},
            headers=herald.admin(),
        )
        assert replay.status_code == 200 and replay.json()["replayed"] == [nid]
        body = await wait_email(herald, nid, "delivered")

        assert [(e["fromQueue"], e["toQueue"], e["reason"]) for e in body["escalationHistory"]][
            1
        ] == ("mail-dlq", "mail", "replay: mailbox fixed")
        statuses = [(h["attempt"], h["status"]) for h in body["deliveryHistory"]]
        assert statuses == [(1, "failed"), (1, "delivered")]  # attempts reset, history kept
        assert body["attempts"] == 1 and body["failedAt"] is None
        assert len(smtp.to(user["email"])) == 1
        listed = await herald.http.get("/api/ops/dlq/email", headers=herald.admin())
        assert nid not in [d["notificationId"] for d in listed.json()["items"]]

    async def test_discard_removes_from_dlq_with_reason(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "550 5.7.1 rejected"
        user = await herald.signup()
        nid = welcome_id(user)
        await wait_email(herald, nid, "failed")
        response = await herald.http.post(
            "/api/ops/dlq/email/discard",
            json={"ids": [nid], "reason": "user left"},
            headers=herald.admin(),
        )
        assert response.json()["discarded"] == [nid]
        body = await email_status(herald, nid)
        assert body["status"] == "failed" and body["discardReason"] == "user left"
        listed = await herald.http.get("/api/ops/dlq/email", headers=herald.admin())
        assert nid not in [d["notificationId"] for d in listed.json()["items"]]
        queues = (await herald.http.get("/api/ops/queues", headers=herald.admin())).json()
        assert queues["queues"]["mail-dlq"]["waiting"] == 0
        # a discarded letter cannot be replayed by accident
        again = await herald.http.post(
            "/api/ops/dlq/email/replay", json={"ids": [nid]}, headers=herald.admin()
        )
        assert again.json()["replayed"] == []

    @pytest.mark.parametrize(
        ("address", "reason"),
        [
            ("no-at-sign", "malformed address"),
            # Valid, and accepted at sign-up, but unsendable without SMTPUTF8: it used to fail
            # every attempt of the ladder with a UnicodeEncodeError from the From/To headers.
            ("josé@exämple.com", "internationalized address"),
        ],
    )
    async def test_an_address_no_attempt_can_send_to_is_permanent(
        self, herald: RunningHerald, smtp: SmtpSink, address: str, reason: str
    ) -> None:
        running = herald.herald
        async with transaction(running.db) as session:
            email = new_email(
                running.settings,
                "signup",
                to=address,
                username="ghost",
                user_id=None,
                context={"verify_url": "x"},
                telemetry_id=None,
                templates=running.templates,
            )
            session.add(email)
        await running.dispatcher.dispatch([email])
        body = await wait_email(herald, email.id, "failed")
        assert body["attempts"] == 1 and body["failureReason"].startswith(reason)
        assert smtp.refused_to(address) == [] and smtp.to(address) == []

    async def test_replay_needs_ids_or_all(self, herald: RunningHerald) -> None:
        response = await herald.http.post(
            "/api/ops/dlq/email/replay", json={}, headers=herald.admin()
        )
        assert response.status_code == 422
        bad_channel = await herald.http.get("/api/ops/dlq/sms", headers=herald.admin())
        assert bad_channel.status_code == 422
        assert (await herald.http.get("/api/ops/dlq/email")).status_code == 401


class TestIdempotentEnqueue:
    async def test_dispatching_twice_sends_once(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        running = herald.herald
        async with transaction(running.db) as session:
            email = new_email(
                running.settings,
                "signup",
                to="twice@example.com",
                username="twice",
                user_id=None,
                context={"verify_url": "x"},
                telemetry_id=None,
                templates=running.templates,
            )
            session.add(email)
        await running.dispatcher.dispatch([email])
        await running.queues.enqueue(Channel.EMAIL, email.id)  # a retrying caller
        await wait_email(herald, email.id, "delivered")
        await running.queues.enqueue(Channel.EMAIL, email.id)  # kept completed job: no-op
        await running.reconciler.run_once()
        assert len(smtp.to("twice@example.com")) == 1
        async with running.db() as session:
            row = await session.get(EmailNotification, email.id)
        assert row is not None and row.attempts == 1


class TestInAppLadder:
    async def test_offline_user_reaches_inapp_dlq_and_replay_delivers_when_online(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        login = await herald.login(user)
        nid = login["loginInAppNotification"]["notificationId"]

        async def dead() -> dict[str, Any] | None:
            response = await herald.http.get(f"/api/ops/dlq/inapp/{nid}", headers=herald.admin())
            body = response.json()
            return body if body["status"] == "failed" else None

        body = await eventually(dead, timeout=30)
        assert body["queueName"] == "inapp-dlq" and body["attempts"] == 8
        assert body["failureReason"] == "recipient offline"
        assert [e["toQueue"] for e in body["escalationHistory"]] == [
            "inapp-retry-1",
            "inapp-retry-2",
            "inapp-dlq",
        ]

        replay = await herald.http.post(
            "/api/ops/dlq/inapp/replay",
            json={"all": True, "type": "login"},
            headers=herald.admin(),
        )
        assert nid in replay.json()["replayed"]
        replayed = (
            await herald.http.get(f"/api/ops/dlq/inapp/{nid}", headers=herald.admin())
        ).json()
        assert replayed["escalationHistory"][-1]["fromQueue"] == "inapp-dlq"

        client = RecordingClient()
        await client.connect(herald.url, auth={"token": login["sessionToken"]})
        try:
            await client.next("auth:success")
            event = await client.next("notification:new", timeout=20)
            assert event["id"] == nid
            assert (await client.sio.call("notification:ack", {"id": nid})) == {"acked": [nid]}
        finally:
            await client.close()
        body = (await herald.http.get(f"/api/ops/dlq/inapp/{nid}", headers=herald.admin())).json()
        assert body["status"] == "delivered"
        # The ack; a replayed attempt that was waiting for it may record its delivery after.
        assert "acknowledged" in [h["status"] for h in body["deliveryHistory"][-2:]]


class TestReconcilerSecondLook:
    async def test_a_row_delivered_while_jobs_were_checked_is_not_requeued(
        self, herald_factory: Any
    ) -> None:
        running = (await herald_factory(workers=False)).herald
        rows = []
        async with transaction(running.db) as session:
            for name in ("still-lost", "moved-on"):
                email = new_email(
                    running.settings,
                    "signup",
                    to=f"{name}@example.com",
                    username=name,
                    user_id=None,
                    context={"verify_url": "x"},
                    telemetry_id=None,
                    templates=running.templates,
                )
                email.status = "queued"  # as a Redis restarted empty leaves it: no job
                session.add(email)
                rows.append(email)
        lost, moved = rows
        # The reconciler has read both rows; then one is delivered before the second look.
        async with transaction(running.db) as session:
            row = await session.get(EmailNotification, moved.id)
            assert row is not None
            row.status = "delivered"

        again = await running.reconciler._lost(EmailNotification, Channel.EMAIL, rows)

        assert [n.id for n in again] == [lost.id]
