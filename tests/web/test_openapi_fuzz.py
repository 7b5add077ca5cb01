"""Property-based: schemathesis drives every operation in our own /openapi.json.

It must find no 5xx and no answer that breaks the document: undocumented status codes, wrong
content types, or bodies that don't match their declared schema. Each operation runs with the
admin token and with a user's session, on data the schema says is valid and on data it says is
not. Hypothesis is derandomized, so a run is repeatable. (The fuzzer is
tests/fixtures/fuzz_openapi.py, run in its own process.)
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.paths import ROOT
from tests.fixtures.stacks import PG_URL


@pytest.fixture
async def own_database(stack: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """On PostgreSQL, a database of this test's own: Hypothesis replays a failing example to
    confirm it, which needs a known starting state, and the session's shared database holds
    whatever earlier tests left (replaying "all" dead letters then depends on the test order)."""
    if not stack:
        yield {}
        return
    name = f"herald_fuzz_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(str(PG_URL), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield {"database_url": str(PG_URL).rsplit("/", 1)[0] + "/" + name}
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.mark.timeout(900)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    herald_factory: Any, own_database: dict[str, Any]
) -> None:
    herald: RunningHerald = await herald_factory(**own_database)
    member = await herald.member()
    other = await herald.member()
    # Something for the fuzzer to find: a friend request and a purchase.
    await herald.http.post(
        "/api/friend-requests", json={"toUserId": other["userId"]}, headers=member["auth"]
    )
    await herald.http.post(
        "/api/purchases",
        json={"items": [{"name": "Tea", "quantity": 1, "unitAmount": 350}]},
        headers=member["auth"],
    )
    options = {
        "url": herald.url,
        "adminToken": ADMIN_TOKEN,
        "email": member["email"],
        "password": member["password"],
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fixtures.fuzz_openapi",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(json.dumps(options).encode())
    assert process.returncode == 0, err.decode()[-5000:]
    failures = json.loads(out)
    assert not failures, "\n\n".join(failures)
