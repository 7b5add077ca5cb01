"""Password resets: no account enumeration, a single-use expiring token, sessions end."""

from __future__ import annotations

import asyncio
import re
from email import message_from_bytes, policy
from typing import Any

from sqlalchemy import select

from herald.accounts.models import PasswordReset
from herald.core.security import hash_token
from tests.fixtures.herald import RunningHerald, bearer
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

TOKEN_IN_LINK = re.compile(r"/reset-password/([A-Za-z0-9_\-]+)")


async def request_reset(herald: RunningHerald, email: str) -> Any:
    return await herald.http.post("/api/reset-passwords", json={"email": email})


async def reset_token(smtp: SmtpSink, email: str, count: int = 1) -> str:
    """The token in the `count`-th reset email to `email` (other emails may come between)."""

    def resets() -> list[str]:
        texts = []
        for envelope in smtp.to(email):
            message = message_from_bytes(envelope.original_content, policy=policy.default)
            if message["Subject"] == "Reset your Herald password":
                texts.append(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        return texts

    async def arrived() -> list[str] | None:
        return resets() if len(resets()) >= count else None

    text = (await eventually(arrived))[count - 1]
    match = TOKEN_IN_LINK.search(text)
    assert match, text
    return match.group(1)


async def confirm(herald: RunningHerald, token: str, password: str = "brand-new-pass") -> Any:
    return await herald.http.post(
        "/api/reset-passwords/confirm", json={"token": token, "newPassword": password}
    )


class TestPasswordReset:
    async def test_reset_changes_password_and_ends_sessions(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        sessions = [(await herald.login(user))["sessionToken"] for _ in range(2)]
        answer = await request_reset(herald, user["email"].upper())  # any case works
        assert answer.status_code == 202
        token = await reset_token(smtp, user["email"])

        async with herald.herald.db() as db:
            stored = await db.scalar(
                select(PasswordReset).where(PasswordReset.user_id == user["userId"])
            )
        assert stored is not None and stored.token_hash == hash_token(token)
        assert token not in stored.token_hash and stored.reset_email_id

        done = await confirm(herald, token)
        assert done.status_code == 200, done.text
        assert done.json() == {"userId": user["userId"], "sessionsEnded": 2}
        for old in sessions:
            r = await herald.http.get(f"/api/session/{user['userId']}", headers=bearer(old))
            assert r.status_code == 401
        old_password = await herald.http.post(
            "/api/logins", json={"email": user["email"], "password": user["password"]}
        )
        assert old_password.status_code == 401
        await herald.login({**user, "password": "brand-new-pass"})

        again = await confirm(herald, token, "another-new-pass")
        assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_token"

    async def test_unknown_address_gets_the_same_answer_and_no_email(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        known = await request_reset(herald, user["email"])
        unknown = await request_reset(herald, "nobody-here@example.com")
        assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
        await reset_token(smtp, user["email"])
        await asyncio.sleep(0.3)
        assert smtp.to("nobody-here@example.com") == []

    async def test_only_the_newest_link_works(self, herald: RunningHerald, smtp: SmtpSink) -> None:
        user = await herald.signup()
        await request_reset(herald, user["email"])
        first = await reset_token(smtp, user["email"], count=1)
        await request_reset(herald, user["email"])
        second = await reset_token(smtp, user["email"], count=2)
        assert first != second
        assert (await confirm(herald, first)).status_code == 400
        assert (await confirm(herald, second)).status_code == 200

    async def test_expired_token_is_refused(self, herald_factory: Any, smtp: SmtpSink) -> None:
        herald = await herald_factory(reset_token_ttl_minutes=1 / 120)  # half a second
        user = await herald.signup()
        await request_reset(herald, user["email"])
        token = await reset_token(smtp, user["email"])
        await asyncio.sleep(0.8)
        r = await confirm(herald, token)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_token"

    async def test_concurrent_confirmations_succeed_once(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        await request_reset(herald, user["email"])
        token = await reset_token(smtp, user["email"])
        answers = await asyncio.gather(*(confirm(herald, token, f"new-pass-{i}") for i in range(3)))
        assert sorted(a.status_code for a in answers) == [200, 400, 400]

    async def test_bad_input_names_the_field(self, herald: RunningHerald) -> None:
        r = await request_reset(herald, "not-an-address")
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "email"
        r = await confirm(herald, "whatever", "short")
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "newPassword"
        r = await confirm(herald, "no-such-token")
        assert r.status_code == 400
