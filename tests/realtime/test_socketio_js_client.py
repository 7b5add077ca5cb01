"""Interoperability with the official JavaScript client, `socket.io-client` v4, through Node."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest

from tests.fixtures.herald import RunningHerald
from tests.fixtures.paths import TESTS

JS_DIR = TESTS / "js"


async def read_until(process: asyncio.subprocess.Process, event: str) -> list[dict[str, Any]]:
    lines = []
    assert process.stdout is not None
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), 30)
        assert raw, f"the JS client ended before {event!r}: {lines}"
        lines.append(json.loads(raw))
        if lines[-1]["event"] == event:
            return lines


@pytest.mark.parametrize("transports", ["polling,websocket", "websocket"])
async def test_official_js_client(herald: RunningHerald, transports: str) -> None:
    node = shutil.which("node")
    assert node, "Node.js is missing: `make test` installs it"
    assert (JS_DIR / "node_modules" / "socket.io-client").exists(), "run `make test` (npm ci)"
    user = await herald.signup()
    first = await herald.login(user)
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "client.mjs"),
        herald.url,
        first["sessionToken"],
        transports,
        "2",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        start = await read_until(process, "ready")
        auth = next(line["data"] for line in start if line["event"] == "auth:success")
        assert auth["userId"] == user["userId"]

        second = await herald.login(user)
        rest = await read_until(process, "done")
        events = start + rest
        got = [e["data"]["id"] for e in events if e["event"] == "notification:new"]
        expected = [
            first["loginInAppNotification"]["notificationId"],  # caught up on authenticate
            second["loginInAppNotification"]["notificationId"],  # pushed live
        ]
        assert got == expected
        assert [e["data"] for e in events if e["event"] == "acked"] == [
            {"acked": [i]} for i in expected
        ]
        assert rest[-1]["data"]["transport"] == "websocket"  # polling was upgraded
        upgrades = [e["data"]["transport"] for e in events if e["event"] == "upgrade"]
        assert upgrades == (["websocket"] if transports.startswith("polling") else [])
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
