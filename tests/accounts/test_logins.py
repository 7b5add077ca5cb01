"""Logins: every attempt is recorded; success opens a session and notifies by email and in-app."""

from __future__ import annotations

from sqlalchemy import select

from herald.accounts.models import Login, Session
from herald.core.security import hash_token
from herald.notifications.models import InAppNotification
from tests.fixtures.herald import RunningHerald
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


class TestLogin:
    async def test_success_returns_session_and_sends_alert(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        result = await herald.login(user)
        assert result["loginSuccessful"] is True
        token = result["sessionToken"]
        assert len(token) >= 32

        envelopes = await smtp.wait_for(user["email"], count=2)  # welcome + login alert
        subjects = [e.original_content.decode() for e in envelopes]
        assert any("Subject: New sign-in to your account" in s for s in subjects)

        async with herald.herald.db() as session:
            login = await session.get(Login, result["loginId"])
            stored = await session.get(Session, login.session_id)
        assert login.login_successful and login.user_id == user["userId"]
        assert login.username == user["username"] and login.email == user["email"]
        assert login.ip_address == "127.0.0.1"
        assert stored.token_hash == hash_token(token) and token not in stored.token_hash

        inapp = result["loginInAppNotification"]
        assert inapp["type"] == "login" and inapp["jobId"] == f"inapp-{inapp['notificationId']}"

    async def test_offline_recipient_is_a_failed_attempt_not_a_delivery(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        result = await herald.login(user)
        notification_id = result["loginInAppNotification"]["notificationId"]

        async def failed_once() -> InAppNotification | None:
            async with herald.herald.db() as session:
                n = await session.get(InAppNotification, notification_id)
            return n if n and n.attempts >= 1 and n.failure_reason else None

        n = await eventually(failed_once)
        assert n.status != "delivered"
        assert n.failure_reason == "recipient offline"

    async def test_wrong_password_is_401_and_still_recorded(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        response = await herald.http.post(
            "/api/logins", json={"username": user["username"], "password": "wrong-password"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"
        assert "sessionToken" not in response.text
        async with herald.herald.db() as session:
            logins = (
                await session.scalars(select(Login).where(Login.user_id == user["userId"]))
            ).all()
        assert [(x.login_successful, x.failure_reason) for x in logins] == [
            (False, "wrong_password")
        ]

    async def test_unknown_user_gets_the_same_answer(self, herald: RunningHerald) -> None:
        response = await herald.http.post(
            "/api/logins", json={"email": "nobody@example.com", "password": "whatever1"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"

    async def test_missing_identifier_is_422(self, herald: RunningHerald) -> None:
        response = await herald.http.post("/api/logins", json={"password": "whatever1"})
        assert response.status_code == 422


class TestLoginHistory:
    async def test_history_is_your_own(self, herald: RunningHerald) -> None:
        alice = await herald.member()  # one session via /api/session, no login record
        await herald.login(alice)
        await herald.http.post(
            "/api/logins", json={"email": alice["email"], "password": "wrong-password"}
        )
        eve = await herald.member()
        await herald.login(eve)

        mine = await herald.http.get("/api/logins", headers=alice["auth"])
        assert mine.status_code == 200
        body = mine.json()
        assert body["total"] == 2
        failed, ok = body["items"]  # newest first
        assert (failed["loginSuccessful"], failed["failureReason"]) == (False, "wrong_password")
        assert failed["loginAlertEmail"] is None and failed["loginInAppNotification"] is None
        assert ok["loginSuccessful"] is True and ok["loginAlertEmail"]["type"] == "login"
        assert ok["loginInAppNotification"]["type"] == "login"
        assert "sessionToken" not in mine.text

        only_ok = await herald.http.get(
            "/api/logins", params={"successful": "true"}, headers=alice["auth"]
        )
        assert only_ok.json()["total"] == 1
        peek = await herald.http.get(
            "/api/logins", params={"userId": eve["userId"]}, headers=alice["auth"]
        )
        assert peek.status_code == 403
        admin = await herald.http.get(
            "/api/logins", params={"userId": eve["userId"]}, headers=herald.admin()
        )
        assert admin.json()["total"] == 1
        assert (await herald.http.get("/api/logins")).status_code == 401

    async def test_failed_alert_emails_are_listed(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        await smtp.wait_for(user["email"])  # the welcome email gets through
        smtp.fail_with = "550 5.7.1 rejected"
        login = await herald.login(user)

        async def listed() -> dict | None:
            r = await herald.http.get("/api/logins/alert-emails/failed", headers=herald.admin())
            items = [i for i in r.json()["items"] if i["loginId"] == login["loginId"]]
            return items[0] if items else None

        item = await eventually(listed)
        assert item["loginAlertEmail"]["status"] == "failed"
        assert "550" in item["loginAlertEmail"]["failureReason"]
        r = await herald.http.get("/api/logins/alert-emails/failed")
        assert r.status_code == 401
