"""README's "Use Herald from your app", run as written against a live Herald: the backend's
shell (an API key from `herald keys create`), then the four blocks in order: sign a token,
upsert a subscriber, trigger, and show the inbox with the JS client in Node.

What the test supplies is what the README leaves to the reader: Herald itself, started with the
block's secret (the fixture, instead of `make run`); Herald's port for `localhost:8000`; the
test Herald's database for the `herald` command; and, for the browser block, the two values
the page gets from the application (`HERALD_URL`, and `token` from step 1)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.fixtures import readme
from tests.fixtures.herald import RunningHerald, bearer
from tests.fixtures.paths import ROOT
from tests.fixtures.smtp import SmtpSink

SECTION = "## Use Herald from your app"


def blocks() -> list[tuple[str, str]]:
    return readme.blocks(SECTION)


def test_the_section_is_the_four_steps() -> None:
    found = blocks()
    assert [lang for lang, _ in found] == ["sh", "python", "python", "python", "js"]
    assert "jwt.encode" in found[1][1]
    assert "upsert_subscriber" in found[2][1]
    assert "trigger(" in found[3][1]
    assert "inbox()" in found[4][1]


async def backend_shell(
    herald: RunningHerald, stack: dict[str, Any], tmp: Path, block: str
) -> dict[str, str]:
    """The setup block in bash, as written; the variables it exports."""
    names = re.findall(r"^export (\w+)=", block, re.M)
    script = block.replace("http://localhost:8000", herald.url)
    script += "".join(f'\necho "{name}=${name}"' for name in names)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # `herald` of this venv
        "HERALD_DATA_DIR": str(herald.settings.data_dir),
        **({"DATABASE_URL": stack["database_url"]} if stack else {}),
    }
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-eu",
        "-c",
        script,
        env=env,
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    exported = dict(line.split("=", 1) for line in out.decode().splitlines())
    assert set(exported) == set(names) and all(exported.values()), (exported, err.decode())
    return exported


def run_python(block: str, namespace: dict[str, Any], n: int) -> str:
    """One Python block in the namespace the earlier ones left; what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, f"README.md, Python block {n}", "exec"), namespace)
    return printed.getvalue()


async def test_use_herald_from_your_app(
    herald_factory: Any,
    stack: dict[str, Any],
    smtp: SmtpSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (_, setup), sign, upsert, send, (_, show) = blocks()
    secret = re.search(r"HERALD_CLIENT_TOKEN_SECRET=(\S+)", setup)
    assert secret, setup
    herald = await herald_factory(client_token_secret=secret.group(1))

    env = await backend_shell(herald, stack, tmp_path, setup)
    assert env["HERALD_API_KEY"].startswith("hk_")
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    # The Python blocks run in a thread: the blocking client must not stall the event loop
    # this test's Herald runs in.
    namespace: dict[str, Any] = {"__name__": "readme"}
    await asyncio.to_thread(run_python, sign[1], namespace, 1)
    token = namespace["token"]
    claims = jwt.decode(token, secret.group(1), algorithms=["HS256"])
    assert claims["sub"] == "user-42" and claims["exp"]

    await asyncio.to_thread(run_python, upsert[1], namespace, 2)
    key = bearer(env["HERALD_API_KEY"])
    subscriber = await herald.http.get("/api/subscribers/user-42", headers=key)
    assert subscriber.status_code == 200, subscriber.text
    assert (subscriber.json()["email"], subscriber.json()["name"]) == ("ada@example.com", "Ada")

    printed = await asyncio.to_thread(run_python, send[1], namespace, 3)
    assert printed.strip() == "[('inapp', 'queued'), ('email', 'queued')]"
    namespace["herald"].close()
    message = (await smtp.wait_for("ada@example.com"))[0]
    assert b"New comment on your post" in message.content

    lines = await show_inbox(herald, tmp_path, show, token, key)
    assert "* New comment on your post: Grace: lovely work!" in lines
    assert "new: New comment on your post" in lines  # caught up: it was waiting
    assert "new: Another one" in lines  # live


async def show_inbox(
    herald: RunningHerald, tmp: Path, block: str, token: str, key: dict[str, str]
) -> list[str]:
    """The browser block in Node: `@herald/client` is clients/js, as `npm install` links it."""
    node = shutil.which("node")
    assert node, "Node.js is missing: `make test` installs it"
    package = tmp / "node_modules" / "@herald" / "client"
    package.parent.mkdir(parents=True)
    package.symlink_to(ROOT / "clients" / "js")
    script = tmp / "inbox.mjs"
    given = f"const HERALD_URL = {json.dumps(herald.url)};\nconst token = {json.dumps(token)};\n"
    script.write_text(given + block)
    process = await asyncio.create_subprocess_exec(
        node, str(script), cwd=tmp, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    lines: list[str] = []
    try:

        async def until(wanted: str) -> None:
            assert process.stdout is not None
            while wanted not in lines:
                raw = await asyncio.wait_for(process.stdout.readline(), 20)
                assert raw, f"node ended: {lines} {await process.stderr.read()!r}"  # type: ignore[union-attr]
                lines.append(raw.decode().rstrip("\n"))

        await until("* New comment on your post: Grace: lovely work!")
        await until("unread: 1")
        r = await herald.http.post(
            "/api/notifications",
            headers=key,
            json={
                "recipients": [{"subscriberId": "user-42"}],
                "type": "comment",
                "title": "Another one",
                "message": "m",
            },
        )
        assert r.status_code == 201, r.text
        await until("new: Another one")
        await until("unread: 2")
        await until("new: New comment on your post")
    finally:
        process.kill()
        await process.wait()
    return lines
