"""API keys: created once, stored hashed, scoped, revocable, and recorded on what they make."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from herald.apikeys.service import CACHE_SECONDS, KeyCache, hash_key
from herald.notifications.models import InAppNotification
from tests.fixtures.herald import RunningHerald, bearer
from tests.fixtures.waiting import eventually


async def create_key(herald: RunningHerald, *scopes: str, name: str = "app") -> dict[str, Any]:
    r = await herald.http.post(
        "/api/ops/api-keys", json={"name": name, "scopes": list(scopes)}, headers=herald.admin()
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def trigger(herald: RunningHerald, key: str, user_id: int) -> Any:
    return await herald.http.post(
        "/api/notifications",
        json={"recipients": [{"userId": user_id}], "type": "x", "title": "t", "message": "m"},
        headers=bearer(key),
    )


def error(response: Any) -> dict[str, Any]:
    return response.json()["error"]  # type: ignore[no-any-return]


class TestKeys:
    async def test_created_once_listed_by_prefix_stored_hashed(self, herald: RunningHerald) -> None:
        made = await create_key(herald, "trigger", "read", name="billing")
        key = made["key"]
        assert key.startswith(f"hk_{made['prefix']}_") and len(key) > 40
        assert sorted(made["scopes"]) == ["read", "trigger"]
        listed = await herald.http.get("/api/ops/api-keys", headers=herald.admin())
        assert listed.status_code == 200
        mine = [k for k in listed.json()["items"] if k["id"] == made["id"]]
        assert mine and mine[0]["prefix"] == made["prefix"] and mine[0]["name"] == "billing"
        assert key not in listed.text and hash_key(key) not in listed.text
        assert "key" not in mine[0] and "keyHash" not in mine[0]
        async with herald.herald.db() as db:
            from herald.apikeys.models import ApiKey

            row = await db.get(ApiKey, made["id"])
        assert row is not None and row.key_hash == hash_key(key) and key not in repr(vars(row))

    async def test_unknown_scope_is_422_naming_it(self, herald: RunningHerald) -> None:
        r = await herald.http.post(
            "/api/ops/api-keys", json={"name": "x", "scopes": ["root"]}, headers=herald.admin()
        )
        assert r.status_code == 422 and error(r)["details"][0]["field"] == "scopes.0"


class TestScopes:
    async def test_a_trigger_key_triggers_and_the_notification_records_it(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        made = await create_key(herald, "trigger")
        r = await trigger(herald, made["key"], user["userId"])
        assert r.status_code == 201, r.text
        request_id = r.headers["x-request-id"]
        async with herald.herald.db() as db:
            n = await db.get(InAppNotification, r.json()["notifications"][0]["notificationId"])
        assert n is not None and n.api_key_id == made["id"]
        record = await herald.http.get(
            f"/api/notifications/inapp/{n.id}",
            headers=bearer(made["key"]),  # no `read` scope
        )
        assert record.status_code == 403
        record = await herald.http.get(f"/api/notifications/inapp/{n.id}", headers=herald.admin())
        assert record.json()["apiKeyId"] == made["id"]

        # The request's `server` stage names the key too.
        async def server_stage() -> Any:
            t = await herald.http.get(f"/api/ops/telemetry/{request_id}", headers=herald.admin())
            stages = [e for e in t.json().get("stages", []) if e["stage"] == "server"]
            return stages and stages[0]

        stage = await eventually(server_stage)
        assert stage["detail"]["apiKey"] == f"key:{made['id']}"

    async def test_the_wrong_scope_is_403_naming_the_missing_one(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        trigger_only = (await create_key(herald, "trigger"))["key"]
        read_only = (await create_key(herald, "read"))["key"]
        cases = [
            ("PUT", "/api/subscribers/s1", trigger_only, "subscribers"),
            ("GET", "/api/ops/queues", trigger_only, "ops"),
            ("GET", "/api/ops/api-keys", read_only, "ops"),
            ("GET", "/api/signups", trigger_only, "read"),
        ]
        for method, path, key, scope in cases:
            r = await herald.http.request(method, path, json={}, headers=bearer(key))
            assert r.status_code == 403, (path, r.text)
            assert error(r)["code"] == "missing_scope" and scope in error(r)["message"]
            assert error(r)["details"] == {"missingScope": scope}
        r = await trigger(herald, read_only, user["userId"])
        assert r.status_code == 403 and error(r)["details"] == {"missingScope": "trigger"}

    async def test_a_read_key_reads_notification_records(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        sent = await trigger(herald, herald.admin()["Authorization"][7:], user["userId"])
        n = sent.json()["notifications"][0]
        read_only = (await create_key(herald, "read"))["key"]
        r = await herald.http.get(
            f"/api/notifications/inapp/{n['notificationId']}", headers=bearer(read_only)
        )
        assert r.status_code == 200, r.text
        assert r.json()["apiKeyId"] is None  # made with the admin token

    async def test_a_session_token_is_no_key(self, herald: RunningHerald) -> None:
        member = await herald.member()
        r = await herald.http.get("/api/ops/queues", headers=member["auth"])
        assert r.status_code == 403

    async def test_the_admin_token_holds_every_scope(self, herald: RunningHerald) -> None:
        for path in ("/api/ops/queues", "/api/subscribers", "/api/signups"):
            r = await herald.http.get(path, headers=herald.admin())
            assert r.status_code == 200, (path, r.text)


class TestRevocation:
    async def test_revoked_is_refused_at_once_here_and_within_the_cache_bound_elsewhere(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.signup()
        made = await create_key(herald, "trigger")
        assert (await trigger(herald, made["key"], user["userId"])).status_code == 201
        # Another server's cache, warmed by a request before the revocation.
        elsewhere = KeyCache(herald.herald.db, "another-admin-token")
        assert await elsewhere.principal(made["key"]) is not None

        r = await herald.http.delete(f"/api/ops/api-keys/{made['id']}", headers=herald.admin())
        assert r.status_code == 200 and r.json()["revokedAt"] is not None
        refused = await trigger(herald, made["key"], user["userId"])
        assert refused.status_code == 401 and error(refused)["code"] == "invalid_api_key"
        listed = await herald.http.get("/api/ops/api-keys", headers=herald.admin())
        assert made["id"] not in [k["id"] for k in listed.json()["items"]]

        await asyncio.sleep(CACHE_SECONDS + 0.2)
        assert await elsewhere.principal(made["key"]) is None

    async def test_revoking_an_unknown_key_is_404(self, herald: RunningHerald) -> None:
        r = await herald.http.delete("/api/ops/api-keys/999999", headers=herald.admin())
        assert r.status_code == 404


async def herald_cli(herald: RunningHerald, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": herald.settings.effective_database_url,
        "HERALD_DATA_DIR": str(herald.settings.data_dir),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "herald",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


class TestCli:
    async def test_create_list_revoke(self, herald: RunningHerald) -> None:
        user = await herald.signup()
        code, out, err = await herald_cli(
            herald, "keys", "create", "--name", "cli app", "--scope", "trigger", "--scope", "read"
        )
        assert code == 0, err
        key = out.strip()
        assert key.startswith("hk_")
        assert (await trigger(herald, key, user["userId"])).status_code == 201

        code, out, _ = await herald_cli(herald, "keys", "list")
        line = next(line for line in out.splitlines() if "cli app" in line)
        key_id = line.split()[0]
        assert key not in out and "read,trigger" in line

        code, out, err = await herald_cli(herald, "keys", "revoke", key_id)
        assert code == 0, err
        # Revoked by another process: this server's cache lets it go within CACHE_SECONDS.
        await asyncio.sleep(CACHE_SECONDS + 0.2)
        assert (await trigger(herald, key, user["userId"])).status_code == 401
