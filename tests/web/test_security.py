"""Cross-cutting guarantees: rate limits, idempotency keys, body size, CORS, headers, secrets."""

from __future__ import annotations

import asyncio
import logging
import re
from email import message_from_bytes, policy
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from herald.commerce.models import Purchase
from herald.core.security import hash_token
from herald.web.idempotency import Idempotency, parse_record
from tests.fixtures.herald import RunningHerald, bearer
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

BASKET = {"items": [{"name": "Tea", "quantity": 1, "unitAmount": 350}]}


class TestRateLimits:
    @pytest.mark.parametrize(
        ("setting", "path", "body"),
        [
            ("rate_limit_signup", "/api/signups", {"username": "x", "email": "x", "password": ""}),
            ("rate_limit_login", "/api/logins", {"email": "a@example.com", "password": "bad"}),
            ("rate_limit_login", "/api/session", {"email": "a@example.com", "password": "bad"}),
            ("rate_limit_reset", "/api/reset-passwords", {"email": "a@example.com"}),
        ],
    )
    async def test_past_the_limit_is_429_with_retry_after(
        self, herald_factory: Any, setting: str, path: str, body: dict
    ) -> None:
        herald = await herald_factory(**{setting: 3, "rate_limit_window": 30})
        answers = [await herald.http.post(path, json=body) for _ in range(4)]
        assert [a.status_code for a in answers[:3]].count(429) == 0
        limited = answers[3]
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        assert limited.headers["x-request-id"] and limited.headers["x-served-by"]

    async def test_counts_live_in_redis_with_the_window_as_ttl(self, herald_factory: Any) -> None:
        """In Redis, so every API server on it counts against one budget."""
        herald = await herald_factory(rate_limit_login=2)
        keys = await herald.herald.redis.keys("herald:ratelimit:*")
        assert keys == []
        await herald.http.post("/api/logins", json={"email": "a@example.com", "password": "x"})
        keys = await herald.herald.redis.keys("herald:ratelimit:login:*")
        assert len(keys) == 1 and 0 < await herald.herald.redis.ttl(keys[0]) <= 60


class TestIdempotency:
    async def test_a_repeat_gets_the_first_answer_and_runs_once(
        self, herald: RunningHerald
    ) -> None:
        buyer = await herald.member()
        headers = {**buyer["auth"], "Idempotency-Key": "order-42"}
        first = await herald.http.post("/api/purchases", json=BASKET, headers=headers)
        second = await herald.http.post("/api/purchases", json=BASKET, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert await _purchases(herald, buyer["userId"]) == 1
        other = await herald.http.post(
            "/api/purchases", json=BASKET, headers={**buyer["auth"], "Idempotency-Key": "order-43"}
        )
        assert other.json()["purchaseId"] != first.json()["purchaseId"]

    async def test_concurrent_duplicates_run_once(self, herald: RunningHerald) -> None:
        buyer = await herald.member()
        headers = {**buyer["auth"], "Idempotency-Key": "burst-1"}
        answers = await asyncio.gather(
            *(herald.http.post("/api/purchases", json=BASKET, headers=headers) for _ in range(5))
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
        ids = {a.json()["purchaseId"] for a in answers if a.status_code == 201}
        assert len(ids) == 1
        for a in answers:
            if a.status_code == 409:
                assert a.json()["error"]["code"] == "idempotency_in_flight"
        assert await _purchases(herald, buyer["userId"]) == 1

    async def test_same_key_other_body_is_refused(self, herald: RunningHerald) -> None:
        buyer = await herald.member()
        headers = {**buyer["auth"], "Idempotency-Key": "k-1"}
        await herald.http.post("/api/purchases", json=BASKET, headers=headers)
        other = {"items": [{"name": "Coffee", "quantity": 1, "unitAmount": 400}]}
        r = await herald.http.post("/api/purchases", json=other, headers=headers)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "idempotency_key_reused"
        assert r.json()["error"]["details"][0]["field"] == "Idempotency-Key"

    async def test_keys_are_per_caller(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        a = await herald.http.post(
            "/api/purchases", json=BASKET, headers={**alice["auth"], "Idempotency-Key": "same"}
        )
        b = await herald.http.post(
            "/api/purchases", json=BASKET, headers={**bob["auth"], "Idempotency-Key": "same"}
        )
        assert a.status_code == b.status_code == 201
        assert a.json()["userId"] == alice["userId"] and b.json()["userId"] == bob["userId"]

    async def test_errors_are_replayed_but_rate_limits_are_not(self, herald: RunningHerald) -> None:
        headers = {"Idempotency-Key": "dup-signup"}
        body = {"username": "idem_user", "email": "idem@example.com", "password": "long-enough"}
        first = await herald.http.post("/api/signups", json=body, headers=headers)
        again = await herald.http.post("/api/signups", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json()["userId"] == first.json()["userId"]
        fresh = await herald.http.post("/api/signups", json=body)  # no key: a real duplicate
        assert fresh.status_code == 409

    async def test_a_key_refused_as_invalid_input_can_carry_the_corrected_request(
        self, herald: RunningHerald
    ) -> None:
        """A 422 never ran the endpoint: it is not kept, so the corrected request gets through."""
        buyer = await herald.member()
        headers = {**buyer["auth"], "Idempotency-Key": "order-fixed-after-422"}
        bad = await herald.http.post("/api/purchases", json={"items": []}, headers=headers)
        assert bad.status_code == 422
        good = await herald.http.post("/api/purchases", json=BASKET, headers=headers)
        assert good.status_code == 201, good.text
        again = await herald.http.post("/api/purchases", json=BASKET, headers=headers)
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json()["purchaseId"] == good.json()["purchaseId"]

    async def test_the_answer_is_kept_before_the_client_can_read_it(
        self, herald: RunningHerald
    ) -> None:
        """A client may repeat the moment it has read the first answer, while the endpoint's
        stack is still unwinding (a CI run once saw `idempotency_in_flight` that way)."""
        store = aioredis.from_url(herald.herald.redis_url)  # records are bytes
        seen_at_end: list[Any] = []

        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": b'{"ok":true}'})
            await asyncio.sleep(0.2)  # still working after the client has its answer

        async def client(message: Any) -> None:
            if message["type"] == "http.response.body":
                seen_at_end.extend(await store.mget(await store.keys("herald:idempotency:*")))

        async def receive() -> Any:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        headers = [(b"idempotency-key", b"early-read")]
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/x",
            "query_string": b"",
            "headers": headers,
            "client": ("10.0.0.9", 1),
        }
        await Idempotency(endpoint, store, ttl_seconds=60)(scope, receive, client)
        await store.aclose()
        [record] = [parse_record(value) for value in seen_at_end]
        assert record.state == "done" and record.status == 201

    async def test_malformed_key_is_422(self, herald: RunningHerald) -> None:
        r = await herald.http.post(
            "/api/purchases", json=BASKET, headers={"Idempotency-Key": "x" * 300}
        )
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "Idempotency-Key"


async def _purchases(herald: RunningHerald, user_id: int) -> int:
    async with herald.herald.db() as db:
        count = await db.scalar(select(func.count(Purchase.id)).where(Purchase.user_id == user_id))
    return int(count or 0)


class TestBodyLimit:
    async def test_declared_large_body_is_413(self, herald_factory: Any) -> None:
        herald = await herald_factory(max_body_bytes=4096)
        r = await herald.http.post(
            "/api/notifications",
            json={"recipients": [{"userId": 1}], "type": "x", "title": "t", "message": "m" * 5000},
            headers=herald.admin(),
        )
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        assert r.headers["x-request-id"] and r.headers["x-served-by"]

    async def test_streamed_large_body_is_413(self, herald_factory: Any) -> None:
        herald = await herald_factory(max_body_bytes=4096)

        async def chunks() -> Any:
            for _ in range(10):
                yield b"x" * 1024

        r = await herald.http.post(
            "/api/signups", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413

    async def test_default_limit_is_one_mebibyte(self, herald: RunningHerald) -> None:
        assert herald.settings.max_body_bytes == 1024 * 1024
        r = await herald.http.post(
            "/api/signups",
            content=b"{" + b" " * (1024 * 1024 + 1) + b"}",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413


class TestCorsAndHeaders:
    async def test_cors_allows_configured_origins_only(self, herald_factory: Any) -> None:
        herald = await herald_factory(cors_origin="http://app.example,http://admin.example")
        preflight = {"Access-Control-Request-Method": "POST"}
        ok = await herald.http.options(
            "/api/signups", headers={"Origin": "http://admin.example", **preflight}
        )
        assert ok.headers["access-control-allow-origin"] == "http://admin.example"
        other = await herald.http.options(
            "/api/signups", headers={"Origin": "http://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers
        simple = await herald.http.get("/api/health", headers={"Origin": "http://app.example"})
        assert simple.headers["access-control-allow-origin"] == "http://app.example"
        assert "X-Request-ID" in simple.headers["access-control-expose-headers"]

    async def test_every_answer_carries_request_and_server_ids(self, herald: RunningHerald) -> None:
        for method, path in [
            ("GET", "/api/signups"),  # 401
            ("POST", "/api/signups"),  # 422
            ("GET", "/api/friend-requests/1"),  # 401
            ("GET", "/openapi.json"),
        ]:
            r = await herald.http.request(method, path, headers={"X-Request-ID": "req-7"})
            assert r.headers["x-request-id"] == "req-7", path
            assert r.headers["x-served-by"] == herald.settings.effective_server_id


class TestNoSecretsAnywhere:
    async def test_passwords_tokens_and_hashes_stay_out_of_answers_and_logs(
        self, herald: RunningHerald, smtp: SmtpSink, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        password = "very-secret-password-1"
        signup = await herald.http.post(
            "/api/signups",
            json={"username": "keeper", "email": "keeper@example.com", "password": password},
        )
        user = signup.json()
        texts = [signup.text]
        login = await herald.http.post(
            "/api/logins", json={"email": user["email"], "password": password}
        )
        session_token = login.json()["sessionToken"]
        wrong = await herald.http.post(
            "/api/logins", json={"email": user["email"], "password": "wrong-" + password}
        )
        texts += [wrong.text]
        for r in [
            await herald.http.get("/api/logins", headers=bearer(session_token)),
            await herald.http.get(f"/api/session/{user['userId']}", headers=bearer(session_token)),
            await herald.http.get("/api/signups", headers=herald.admin()),
            await herald.http.post("/api/reset-passwords", json={"email": user["email"]}),
        ]:
            texts.append(r.text)

        async def reset_mail() -> str | None:
            for e in smtp.to(user["email"]):
                m = message_from_bytes(e.original_content, policy=policy.default)
                if m["Subject"] == "Reset your Herald password":
                    return m.get_body(("plain",)).get_content()  # type: ignore[union-attr, no-any-return]
            return None

        reset_token = re.search(r"/reset-password/(\S+)", await eventually(reset_mail))
        assert reset_token
        confirm = await herald.http.post(
            "/api/reset-passwords/confirm",
            json={"token": reset_token.group(1), "newPassword": "another-" + password},
        )
        texts.append(confirm.text)
        secrets = [
            password,
            session_token,
            hash_token(session_token),
            reset_token.group(1),
            hash_token(reset_token.group(1)),
            "$argon2id$",
        ]
        for text in texts:
            for secret in secrets:
                assert secret not in text
        # uvicorn's access log is off in `herald serve/api` (access_log=False): leave it out.
        lines = [
            f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name != "uvicorn.access"
        ]
        assert lines, "expected some log lines"
        for line in lines:
            for secret in secrets:
                assert secret not in line, line


class TestIdempotencyKeepsNoCredentials:
    async def test_a_login_answer_is_not_kept_and_not_run_twice(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        headers = {"Idempotency-Key": "login-1"}
        body = {"email": user["email"], "password": user["password"]}
        first = await herald.http.post("/api/logins", json=body, headers=headers)
        assert first.status_code == 201 and first.headers["cache-control"] == "no-store"
        token = first.json()["sessionToken"]
        store = aioredis.from_url(herald.herald.redis_url)  # records are bytes
        stored = [await store.get(k) for k in await store.keys("herald:idempotency:*")]
        await store.aclose()
        assert stored and all(token.encode() not in (v or b"") for v in stored)
        assert all(not parse_record(v).kept for v in stored if v)
        again = await herald.http.post("/api/logins", json=body, headers=headers)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "idempotency_key_used"
        history = await herald.http.get("/api/logins", headers=bearer(token))
        assert history.json()["total"] == 1  # the repeat did not sign in again
