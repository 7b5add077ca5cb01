"""HTTP -> database -> queue -> worker -> SMTP, for the welcome email of a signup."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

from sqlalchemy import select

from herald.accounts.models import User
from herald.core.security import hash_token
from tests.fixtures.herald import RunningHerald
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


async def welcome_status(herald: RunningHerald, user_id: int) -> dict:
    response = await herald.http.get(
        f"/api/signups/{user_id}/welcome-email-status", headers=herald.admin()
    )
    assert response.status_code == 200, response.text
    return response.json()


class TestSignupDeliversWelcomeEmail:
    async def test_welcome_email_reaches_smtp_and_status_is_tracked(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        assert user["welcomeEmail"]["status"] in {"queued", "sending", "delivered"}
        assert "password" not in {k.lower() for k in user if k != "password"}

        [envelope] = await smtp.wait_for(user["email"])
        body = envelope.original_content.decode()
        assert f"Subject: Welcome to Herald, {user['username']}" in body
        assert "/verify/" in body  # the verification link, with its one-time token

        status = await eventually(lambda: _delivered(herald, user["userId"]))
        email = status["welcomeEmail"]
        assert email["attempts"] == 1
        assert email["messageId"] and email["messageId"] in body
        assert email["deliveredAt"]
        [attempt] = email["deliveryHistory"]
        assert attempt["status"] == "delivered" and attempt["queueName"] == "mail"
        assert attempt["smtpResponse"].startswith("2.0.0")

    async def test_transient_smtp_failure_is_retried_and_recorded(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "451 4.3.0 mailbox busy, try later"
        user = await herald.signup()
        await eventually(lambda: _asyncify(smtp.refused >= 1))
        smtp.fail_with = None
        await smtp.wait_for(user["email"])
        email = (await eventually(lambda: _delivered(herald, user["userId"])))["welcomeEmail"]
        history = email["deliveryHistory"]
        assert [h["status"] for h in history][-1] == "delivered"
        assert history[0]["status"] == "failed" and "451" in history[0]["error"]
        assert email["retryHistory"][0]["error"] == history[0]["error"]
        assert email["attempts"] == len(history) >= 2

    async def test_password_is_stored_as_argon2id(self, herald: RunningHerald) -> None:
        user = await herald.signup(password="correct horse battery")
        async with herald.herald.db() as session:
            stored = await session.scalar(select(User).where(User.id == user["userId"]))
        assert stored is not None
        assert stored.password_hash.startswith("$argon2id$")
        assert "correct horse" not in stored.password_hash


class TestSignupValidation:
    async def test_duplicate_username_is_409_naming_the_field(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        response = await herald.http.post(
            "/api/signups",
            json={"username": user["username"], "email": "other@example.com", "password": "x" * 9},
        )
        assert response.status_code == 409
        assert response.json()["error"]["details"][0]["field"] == "username"

    async def test_bad_email_is_422_naming_the_field(self, herald: RunningHerald) -> None:
        response = await herald.http.post(
            "/api/signups",
            json={"username": "bob_ok", "email": "not-an-email", "password": "x" * 9},
        )
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert [d["field"] for d in error["details"]] == ["email"]

    async def test_short_password_is_422(self, herald: RunningHerald) -> None:
        response = await herald.http.post(
            "/api/signups",
            json={"username": "carol", "email": "c@example.com", "password": "short"},
        )
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["field"] == "password"

    async def test_unknown_user_status_is_404(self, herald: RunningHerald) -> None:
        response = await herald.http.get(
            "/api/signups/999999/welcome-email-status", headers=herald.admin()
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def _delivered(herald: RunningHerald, user_id: int) -> dict | None:
    status = await welcome_status(herald, user_id)
    return status if status["welcomeEmail"]["status"] == "delivered" else None


async def _asyncify(value: object) -> object:
    return value


def _verify_token(envelope_bytes: bytes) -> str:
    message = message_from_bytes(envelope_bytes, policy=policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(r"/verify/([A-Za-z0-9_\-]+)", text)
    assert match, text
    return match.group(1)


class TestVerification:
    async def test_verify_once_with_the_emailed_token(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        assert user["emailVerified"] is False
        [envelope] = await smtp.wait_for(user["email"])
        token = _verify_token(envelope.original_content)
        async with herald.herald.db() as session:
            stored = await session.get(User, user["userId"])
        assert stored is not None and stored.verification_token_hash == hash_token(token)

        r = await herald.http.post(f"/api/signups/verify/{token}")
        assert r.status_code == 200, r.text
        assert r.json()["emailVerified"] is True and r.json()["userId"] == user["userId"]
        again = await herald.http.post(f"/api/signups/verify/{token}")
        assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_token"

    async def test_unknown_token_is_400(self, herald: RunningHerald) -> None:
        r = await herald.http.post("/api/signups/verify/not-a-real-token")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_token"


class TestSignupOperations:
    async def test_list_needs_admin_and_paginates(self, herald: RunningHerald) -> None:
        users = [await herald.signup() for _ in range(3)]
        assert (await herald.http.get("/api/signups")).status_code == 401
        member = await herald.member()
        assert (await herald.http.get("/api/signups", headers=member["auth"])).status_code == 403
        r = await herald.http.get(
            "/api/signups", params={"limit": 2, "page": 1}, headers=herald.admin()
        )
        assert r.status_code == 200
        page = r.json()
        assert page["total"] >= 4 and page["limit"] == 2 and len(page["items"]) == 2
        assert page["items"][0]["userId"] == member["userId"]  # newest first
        assert page["items"][1]["userId"] == users[-1]["userId"]
        assert "password" not in r.text.lower()
        bad = await herald.http.get("/api/signups", params={"page": 0}, headers=herald.admin())
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "page"

    async def test_statistics(self, herald: RunningHerald, smtp: SmtpSink) -> None:
        before = (await herald.http.get("/api/signups/statistics", headers=herald.admin())).json()
        user = await herald.signup()
        [envelope] = await smtp.wait_for(user["email"])
        await herald.http.post(f"/api/signups/verify/{_verify_token(envelope.original_content)}")
        await herald.signup()
        after = (await herald.http.get("/api/signups/statistics", headers=herald.admin())).json()
        assert after["totalUsers"] - before["totalUsers"] == 2
        assert after["verifiedUsers"] - before["verifiedUsers"] == 1
        assert after["signupsLast24h"] - before["signupsLast24h"] == 2
        assert after["signupsLast7d"] - before["signupsLast7d"] == 2
        assert sum(after["welcomeEmails"].values()) - sum(before["welcomeEmails"].values()) == 2

    async def test_failed_welcome_emails_are_listed(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "550 5.1.1 no such mailbox"  # permanent: straight to the DLQ
        user = await herald.signup()

        async def listed() -> dict | None:
            r = await herald.http.get("/api/signups/welcome-emails/failed", headers=herald.admin())
            assert r.status_code == 200, r.text
            items = [i for i in r.json()["items"] if i["userId"] == user["userId"]]
            return items[0] if items else None

        item = await eventually(listed)
        assert item["welcomeEmail"]["status"] == "failed"
        assert item["welcomeEmail"]["queueName"] == "mail-dlq"
        assert "550" in item["welcomeEmail"]["failureReason"]
        member = await herald.member()
        r = await herald.http.get("/api/signups/welcome-emails/failed", headers=member["auth"])
        assert r.status_code == 403


class TestWelcomeStatusAccess:
    async def test_own_yes_others_no_admin_yes(self, herald: RunningHerald) -> None:
        alice, eve = await herald.member(), await herald.member()
        path = f"/api/signups/{alice['userId']}/welcome-email-status"
        assert (await herald.http.get(path, headers=alice["auth"])).status_code == 200
        stolen = await herald.http.get(path, headers=eve["auth"])
        assert stolen.status_code == 403 and alice["email"] not in stolen.text
        assert (await herald.http.get(path, headers=herald.admin())).status_code == 200
        assert (await herald.http.get(path)).status_code == 401
