"""Preferences that really block: the API for the application and for the subscriber, critical
types, and a trigger to someone who opted out ending `skipped` with its reason, audit row and
metric, never queued."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from tests.fixtures.herald import RunningHerald, bearer
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

SECRET = "an-application-secret-of-at-least-32-chars"


def client_token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + 300)}, SECRET, "HS256")


@pytest.fixture
async def app_herald(herald_factory: Any) -> RunningHerald:
    return await herald_factory(client_token_secret=SECRET)  # type: ignore[no-any-return]


async def subscriber(herald: RunningHerald) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    sid, email = f"pref-{tag}", f"pref-{tag}@example.com"
    r = await herald.http.put(
        f"/api/subscribers/{sid}", json={"email": email}, headers=herald.admin()
    )
    assert r.status_code == 201, r.text
    return sid, email


async def key(herald: RunningHerald, *scopes: str) -> dict[str, str]:
    r = await herald.http.post(
        "/api/ops/api-keys", json={"name": "prefs", "scopes": list(scopes)}, headers=herald.admin()
    )
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def put_prefs(herald: RunningHerald, sid: str, body: Any, headers: Any = None) -> Any:
    return await herald.http.put(
        f"/api/subscribers/{sid}/preferences", json=body, headers=headers or herald.admin()
    )


async def trigger(
    herald: RunningHerald, recipient: dict[str, Any], kind: str, channels: list[str]
) -> list[dict[str, Any]]:
    r = await herald.http.post(
        "/api/notifications",
        json={
            "recipients": [recipient],
            "type": kind,
            "title": f"About {kind}",
            "message": "Something happened.",
            "channels": channels,
        },
        headers=herald.admin(),
    )
    assert r.status_code == 201, r.text
    return r.json()["notifications"]  # type: ignore[no-any-return]


async def record(herald: RunningHerald, channel: str, notification_id: int) -> dict[str, Any]:
    r = await herald.http.get(
        f"/api/notifications/{channel}/{notification_id}", headers=herald.admin()
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def fields(response: Any) -> list[str]:
    return [d["field"] for d in response.json()["error"]["details"]]


class TestPreferenceApi:
    async def test_the_application_merges_switches_and_null_removes_one(
        self, app_herald: RunningHerald
    ) -> None:
        sid, _ = await subscriber(app_herald)
        first = await put_prefs(
            app_herald,
            sid,
            {"channels": {"email": False}, "types": {"digest.weekly": {"email": False}}},
        )
        assert first.status_code == 200, first.text
        assert first.json() == {
            "subscriberId": sid,
            "channels": {"email": False},
            "types": {"digest.weekly": {"email": False}},
        }
        # Merge: what is not named stays; null removes; a type as a whole replaces its channels.
        second = await put_prefs(
            app_herald,
            sid,
            {
                "channels": {"email": None, "inapp": False},
                "types": {
                    "promo": False,
                    "digest.weekly": True,
                    "news": {"*": False, "inapp": True},
                },
            },
        )
        assert second.status_code == 200, second.text
        expected = {
            "subscriberId": sid,
            "channels": {"inapp": False},
            "types": {"digest.weekly": True, "news": {"*": False, "inapp": True}, "promo": False},
        }
        assert second.json() == expected
        got = await app_herald.http.get(
            f"/api/subscribers/{sid}/preferences", headers=app_herald.admin()
        )
        assert got.status_code == 200 and got.json() == expected

    async def test_unknown_channels_and_bad_types_are_422_naming_the_field(
        self, app_herald: RunningHerald
    ) -> None:
        sid, _ = await subscriber(app_herald)
        for body, field in (
            ({"channels": {"sms": False}}, "channels.sms"),
            ({"types": {"promo": {"pigeon": False}}}, "types.promo.pigeon"),
            ({"types": {"Promo!": False}}, "types.Promo!"),
        ):
            r = await put_prefs(app_herald, sid, body)
            assert r.status_code == 422 and fields(r) == [field], r.text
        # Nothing of a refused request was stored.
        got = await app_herald.http.get(
            f"/api/subscribers/{sid}/preferences", headers=app_herald.admin()
        )
        assert got.json()["channels"] == {} and got.json()["types"] == {}

    async def test_an_unknown_subscriber_is_404_for_the_application(
        self, app_herald: RunningHerald
    ) -> None:
        r = await app_herald.http.get(
            "/api/subscribers/nobody-x/preferences", headers=app_herald.admin()
        )
        assert r.status_code == 404

    async def test_api_keys_need_the_subscribers_scope(self, app_herald: RunningHerald) -> None:
        sid, _ = await subscriber(app_herald)
        ok = await put_prefs(
            app_herald, sid, {"channels": {"email": False}}, await key(app_herald, "subscribers")
        )
        assert ok.status_code == 200, ok.text
        refused = await put_prefs(
            app_herald, sid, {"channels": {"email": True}}, await key(app_herald, "trigger")
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["details"] == {"missingScope": "subscribers"}
        assert (await put_prefs(app_herald, sid, {}, bearer("hk_nope_nope"))).status_code == 401

    async def test_a_subscriber_reads_and_writes_their_own_and_no_one_elses(
        self, app_herald: RunningHerald
    ) -> None:
        mine, _ = await subscriber(app_herald)
        theirs, _ = await subscriber(app_herald)
        token = bearer(client_token(mine))
        r = await put_prefs(app_herald, mine, {"types": {"promo": False}}, token)
        assert r.status_code == 200 and r.json()["types"] == {"promo": False}, r.text
        got = await app_herald.http.get(f"/api/subscribers/{mine}/preferences", headers=token)
        assert got.status_code == 200 and got.json()["types"] == {"promo": False}
        # The application sees what the subscriber chose.
        seen = await app_herald.http.get(
            f"/api/subscribers/{mine}/preferences", headers=app_herald.admin()
        )
        assert seen.json()["types"] == {"promo": False}

        other = await put_prefs(app_herald, theirs, {"channels": {"email": False}}, token)
        assert other.status_code == 403, other.text
        read = await app_herald.http.get(f"/api/subscribers/{theirs}/preferences", headers=token)
        assert read.status_code == 403
        untouched = await app_herald.http.get(
            f"/api/subscribers/{theirs}/preferences", headers=app_herald.admin()
        )
        assert untouched.json()["channels"] == {}
        forged = jwt.encode({"sub": mine, "exp": int(time.time() + 300)}, "x" * 40, "HS256")
        assert (await put_prefs(app_herald, mine, {}, bearer(forged))).status_code == 401

    async def test_a_signed_up_user_uses_their_session_token(
        self, app_herald: RunningHerald
    ) -> None:
        user = await app_herald.member()
        other = await app_herald.member()
        mine = await put_prefs(
            app_herald, str(user["userId"]), {"channels": {"inapp": False}}, user["auth"]
        )
        assert mine.status_code == 200, mine.text
        theirs = await put_prefs(app_herald, str(other["userId"]), {}, user["auth"])
        assert theirs.status_code == 403


class TestTypes:
    async def test_defaults_are_listed_and_the_application_declares_critical_types(
        self, app_herald: RunningHerald
    ) -> None:
        listed = await app_herald.http.get("/api/types", headers=app_herald.admin())
        assert listed.status_code == 200, listed.text
        by_type = {t["type"]: t for t in listed.json()["items"]}
        assert by_type["login"]["critical"] and by_type["reset_password"]["critical"]

        kind = f"billing.{uuid.uuid4().hex[:6]}"
        trigger_key = await key(app_herald, "trigger")
        created = await app_herald.http.put(
            f"/api/types/{kind}", json={"critical": True}, headers=trigger_key
        )
        assert created.status_code == 201, created.text
        assert created.json()["critical"] is True and created.json()["declared"] is True
        changed = await app_herald.http.put(
            f"/api/types/{kind}", json={"critical": False}, headers=trigger_key
        )
        assert changed.status_code == 200 and changed.json()["critical"] is False
        got = await app_herald.http.get(f"/api/types/{kind}", headers=await key(app_herald, "ops"))
        assert got.status_code == 200 and got.json()["critical"] is False

        refused = await app_herald.http.put(
            f"/api/types/{kind}",
            json={"critical": True},
            headers=await key(app_herald, "subscribers"),
        )
        assert refused.status_code == 403
        bad = await app_herald.http.put(
            "/api/types/Bad!", json={"critical": True}, headers=trigger_key
        )
        assert bad.status_code == 422


class TestSkipped:
    async def test_an_opted_out_channel_is_skipped_with_reason_audit_row_and_metric(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        sid, email = await subscriber(app_herald)
        assert (await put_prefs(app_herald, sid, {"channels": {"email": False}})).status_code == 200
        made = await trigger(app_herald, {"subscriberId": sid}, "comment", ["email", "inapp"])
        by_channel = {n["channel"]: n for n in made}
        assert by_channel["email"]["status"] == "skipped"
        assert by_channel["inapp"]["status"] in ("queued", "sending")  # in-app still goes

        skipped = await record(app_herald, "email", by_channel["email"]["notificationId"])
        assert skipped["status"] == "skipped" and skipped["queueName"] is None
        assert skipped["failureReason"] == "preferences: email off"
        history = skipped["metadata"]["deliveryHistory"]
        assert [(h["status"], h["error"]) for h in history] == [
            ("skipped", "preferences: email off")
        ]

        metrics = (await app_herald.http.get("/metrics")).text
        assert 'herald_notifications_skipped_total{channel="email",reason="channel"} 1.0' in metrics

        # Never sent: a critical email to the same address arrives alone.
        sent = await trigger(app_herald, {"subscriberId": sid}, "login", ["email"])
        assert sent[0]["status"] == "queued"
        await smtp.wait_for(email)
        assert len(smtp.to(email)) == 1
        assert b"About login" in smtp.to(email)[0].content  # type: ignore[operator]
        # The reconciler and the worker leave it alone: still skipped, one audit row.
        again = await record(app_herald, "email", by_channel["email"]["notificationId"])
        assert again["status"] == "skipped" and len(again["metadata"]["deliveryHistory"]) == 1

    async def test_the_most_specific_switch_decides_for_user_id_recipients(
        self, app_herald: RunningHerald
    ) -> None:
        user = await app_herald.member()
        sid = str(user["userId"])
        body = {"channels": {"email": False}, "types": {"invoice": {"email": True}, "promo": False}}
        assert (await put_prefs(app_herald, sid, body)).status_code == 200
        recipient = {"userId": user["userId"]}
        invoice = await trigger(app_herald, recipient, "invoice", ["email"])
        assert invoice[0]["status"] == "queued"  # type x channel on beats channel off
        promo = {
            n["channel"]: n
            for n in await trigger(app_herald, recipient, "promo", ["email", "inapp"])
        }
        assert promo["email"]["status"] == promo["inapp"]["status"] == "skipped"
        inapp = await record(app_herald, "inapp", promo["inapp"]["notificationId"])
        assert inapp["failureReason"] == "preferences: type promo off"
        # A skipped in-app notification is not in the inbox.
        inbox = await app_herald.http.get("/api/me/notifications", headers=user["auth"])
        assert promo["inapp"]["notificationId"] not in [n["id"] for n in inbox.json()["items"]]

    async def test_a_declared_critical_type_ignores_preferences(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        sid, email = await subscriber(app_herald)
        kind = f"security.{uuid.uuid4().hex[:6]}"
        assert (
            await put_prefs(app_herald, sid, {"types": {kind: False}, "channels": {"email": False}})
        ).status_code == 200
        r = await app_herald.http.put(
            f"/api/types/{kind}", json={"critical": True}, headers=app_herald.admin()
        )
        assert r.status_code == 201
        made = await trigger(app_herald, {"subscriberId": sid}, kind, ["email"])
        assert made[0]["status"] == "queued"
        (message,) = await smtp.wait_for(email)
        assert b"List-Unsubscribe" not in message.content  # type: ignore[operator]


class TestDomainFlows:
    async def test_a_purchase_honours_the_buyers_switches_and_its_receipt_can_unsubscribe(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        basket = {"items": [{"name": "Pen", "quantity": 2, "unitAmount": 150}], "currency": "EUR"}
        buyer = await app_herald.member()
        first = await app_herald.http.post("/api/purchases", json=basket, headers=buyer["auth"])
        assert first.status_code == 201, first.text

        async def receipt() -> list[bytes]:
            mails = [m.original_content for m in smtp.to(buyer["email"])]
            return [m for m in mails if b"Your receipt" in m]  # type: ignore[operator,misc]

        (mail,) = await eventually(receipt)
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in mail

        body = {"types": {"purchase": {"email": False}}}
        assert (await put_prefs(app_herald, str(buyer["userId"]), body)).status_code == 200
        second = await app_herald.http.post("/api/purchases", json=basket, headers=buyer["auth"])
        assert second.status_code == 201, second.text
        assert second.json()["receiptEmail"]["status"] == "skipped"
        assert second.json()["purchaseInAppNotification"]["status"] != "skipped"
        skipped = await record(app_herald, "email", second.json()["receiptEmail"]["notificationId"])
        assert skipped["failureReason"] == "preferences: email off for type purchase"
        assert [h["status"] for h in skipped["metadata"]["deliveryHistory"]] == ["skipped"]

    async def test_the_signup_verification_is_critical_and_carries_no_link(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await app_herald.signup()
        (welcome,) = await smtp.wait_for(user["email"])  # the signup's only email
        assert b"List-Unsubscribe" not in welcome.original_content  # type: ignore[operator]

    async def test_friend_request_notices_honour_the_recipients_in_app_switches(
        self, app_herald: RunningHerald
    ) -> None:
        alice, bob = await app_herald.member(), await app_herald.member()
        off = {"types": {"friend_request": {"inapp": False}}}
        assert (await put_prefs(app_herald, str(bob["userId"]), off)).status_code == 200
        sent = await app_herald.http.post(
            "/api/friend-requests", json={"toUserId": bob["userId"]}, headers=alice["auth"]
        )
        assert sent.status_code == 201, sent.text
        path = f"/api/friend-requests/{sent.json()['friendRequestId']}"
        seen = await app_herald.http.get(path, headers=bob["auth"])  # the sender sees no tracking
        notice = seen.json()["friendRequestInAppNotification"]
        assert notice["status"] == "skipped"
        assert notice["failureReason"] == "preferences: inapp off for type friend_request"
        # Accepting still tells Alice, whose switches are all on.
        accepted = await app_herald.http.patch(f"{path}/accept", headers=bob["auth"])
        assert accepted.status_code == 200, accepted.text
        inbox = await app_herald.http.get("/api/me/notifications", headers=alice["auth"])
        assert "friend_request_accepted" in [n["type"] for n in inbox.json()["items"]]


class TestLeftAlone:
    async def test_the_reconciler_never_queues_a_skipped_notification(
        self, herald_factory: Any
    ) -> None:
        herald = await herald_factory(reconcile_grace=0)
        sid, _ = await subscriber(herald)
        assert (await put_prefs(herald, sid, {"types": {"promo": False}})).status_code == 200
        (made,) = await trigger(herald, {"subscriberId": sid}, "promo", ["email"])
        assert made["status"] == "skipped"
        await herald.herald.reconciler.run_once()  # every row, however new
        assert await herald.herald.queues.state("mail", made["jobId"]) == "unknown"  # no job
        after = await record(herald, "email", made["notificationId"])
        assert after["status"] == "skipped" and after["attempts"] == 0

    async def test_deleting_a_subscriber_deletes_their_switches(
        self, app_herald: RunningHerald
    ) -> None:
        sid, _ = await subscriber(app_herald)
        assert (await put_prefs(app_herald, sid, {"channels": {"email": False}})).status_code == 200
        gone = await app_herald.http.delete(f"/api/subscribers/{sid}", headers=app_herald.admin())
        assert gone.status_code == 200, gone.text
        again = await app_herald.http.put(
            f"/api/subscribers/{sid}", json={}, headers=app_herald.admin()
        )
        assert again.status_code == 201
        got = await app_herald.http.get(
            f"/api/subscribers/{sid}/preferences", headers=app_herald.admin()
        )
        assert got.json()["channels"] == {}
