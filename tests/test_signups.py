"""HTTP -> database -> queue -> worker -> SMTP, for the welcome email of a signup."""

from __future__ import annotations

from sqlalchemy import select

from herald.accounts.models import User
from tests.conftest import RunningHerald, SmtpSink, eventually


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
