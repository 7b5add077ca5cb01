"""Sessions: open with credentials, list your own (never tokens), log out one or all."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from herald.accounts.models import Session
from tests.fixtures.herald import RunningHerald, bearer


class TestSessions:
    async def test_open_list_and_logout(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        opened = await herald.http.post(
            "/api/session", json={"username": user["username"], "password": user["password"]}
        )
        assert opened.status_code == 201
        body = opened.json()
        assert body["userId"] == user["userId"] and len(body["sessionToken"]) >= 32
        token = body["sessionToken"]
        other = (await herald.login(user))["sessionToken"]

        listed = await herald.http.get(f"/api/session/{user['userId']}", headers=bearer(token))
        assert listed.status_code == 200
        sessions = listed.json()["sessions"]
        assert len(sessions) == 2
        assert [s["current"] for s in sessions if s["sessionId"] == body["sessionId"]] == [True]
        assert token not in listed.text and other not in listed.text
        assert "tokenHash" not in listed.text and "token_hash" not in listed.text

        out = await herald.http.delete("/api/session", headers=bearer(token))
        assert out.status_code == 200 and out.json() == {"sessionsEnded": 1}
        gone = await herald.http.get(f"/api/session/{user['userId']}", headers=bearer(token))
        assert gone.status_code == 401
        still = await herald.http.get(f"/api/session/{user['userId']}", headers=bearer(other))
        assert still.status_code == 200 and len(still.json()["sessions"]) == 1

    async def test_logout_everywhere(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        tokens = [(await herald.login(user))["sessionToken"] for _ in range(3)]
        out = await herald.http.delete(
            "/api/session", params={"all": "true"}, headers=bearer(tokens[0])
        )
        assert out.json() == {"sessionsEnded": 3}
        for token in tokens:
            r = await herald.http.get(f"/api/session/{user['userId']}", headers=bearer(token))
            assert r.status_code == 401
        async with herald.herald.db() as db:
            rows = await db.scalars(select(Session).where(Session.user_id == user["userId"]))
            assert all(s.revoked_at is not None for s in rows)

    async def test_wrong_password_is_401(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        r = await herald.http.post(
            "/api/session", json={"email": user["email"], "password": "not-it-at-all"}
        )
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
        assert (await herald.http.post("/api/session", json={"password": "x"})).status_code == 422

    async def test_expired_session_is_401(self, herald_factory) -> None:  # type: ignore[no-untyped-def]
        herald = await herald_factory(session_ttl_hours=1 / 3600 / 2)  # half a second
        member = await herald.member()
        await asyncio.sleep(0.8)
        r = await herald.http.get(f"/api/session/{member['userId']}", headers=member["auth"])
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"


class TestSessionAccess:
    async def test_another_users_sessions_are_403(self, herald: RunningHerald) -> None:
        alice, eve = await herald.member(), await herald.member()
        r = await herald.http.get(f"/api/session/{alice['userId']}", headers=eve["auth"])
        assert r.status_code == 403
        assert alice["token"] not in r.text and alice["username"] not in r.text
        admin = await herald.http.get(f"/api/session/{alice['userId']}", headers=herald.admin())
        assert admin.status_code == 200 and len(admin.json()["sessions"]) == 1
        assert (await herald.http.get(f"/api/session/{alice['userId']}")).status_code == 401
        missing = await herald.http.get("/api/session/99999999", headers=herald.admin())
        assert missing.status_code == 404

    async def test_logout_needs_a_session_not_the_admin_token(self, herald: RunningHerald) -> None:
        assert (await herald.http.delete("/api/session")).status_code == 401
        r = await herald.http.delete("/api/session", headers=herald.admin())
        assert r.status_code == 401
