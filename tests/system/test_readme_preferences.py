"""README's "Preferences and unsubscribe", run as written against a live Herald: the curl
block (switches, a skipped trigger, a critical type), then the mail provider's one-click POST
on the link of a delivered email.

What the test supplies is what the README leaves to the reader: `HERALD_URL` and an API key
with the two scopes; a subscriber id and address of this test's own for `user-42` and
`ada@example.com` (the PostgreSQL stack shares its database across the session's tests); and,
for the POST, the link from the List-Unsubscribe header of an email Herald delivered."""

from __future__ import annotations

import asyncio
import email
import json
import re
import uuid

from tests.fixtures import readme
from tests.fixtures.herald import RunningHerald
from tests.fixtures.smtp import SmtpSink

SECTION = "## Preferences and unsubscribe"
STRICT_CURL = 'curl() { command curl -sS --fail-with-body "$@"; echo; }\nset -e\n'


def blocks() -> list[str]:
    found = readme.blocks(SECTION)
    assert [lang for lang, _ in found] == ["sh", "sh"]
    return [code for _, code in found]


async def bash(script: str, env: dict[str, str]) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        STRICT_CURL + script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, (out.decode(), err.decode())
    return [line for line in out.decode().splitlines() if line.strip()]


async def test_preferences_and_unsubscribe_as_written(
    herald: RunningHerald, smtp: SmtpSink
) -> None:
    key = await herald.http.post(
        "/api/ops/api-keys",
        json={"name": "readme", "scopes": ["subscribers", "trigger"]},
        headers=herald.admin(),
    )
    assert key.status_code == 201, key.text
    env = {"PATH": "/usr/bin:/bin", "HERALD_URL": herald.url, "HERALD_API_KEY": key.json()["key"]}
    tag = uuid.uuid4().hex[:8]
    sid, address = f"readme-{tag}", f"readme-{tag}@example.com"
    switches, unsubscribe = blocks()

    out = await bash(switches.replace("user-42", sid).replace("ada@example.com", address), env)
    subscriber, put, got, triggered, declared, listed = (json.loads(line) for line in out)
    assert subscriber["subscriberId"] == sid
    documented = re.search(r"# -> (\{.*\})", switches)
    assert documented, "the README shows the GET's answer"
    assert got == put == json.loads(documented.group(1).replace("user-42", sid))
    assert [n["status"] for n in triggered["notifications"]] == ["skipped", "skipped"]
    record = await herald.http.get(
        f"/api/notifications/email/{triggered['notifications'][0]['notificationId']}",
        headers=herald.admin(),
    )
    assert record.json()["failureReason"] == "preferences: type promo off"
    assert declared["critical"] is True
    assert {"type": "security.alert", "critical": True} in [
        {k: t[k] for k in ("type", "critical")} for t in listed["items"]
    ]

    r = await herald.http.post(
        "/api/notifications",
        json={
            "recipients": [{"subscriberId": sid}],
            "type": "news",
            "title": "News",
            "message": "Read all about it",
            "channels": ["email"],
        },
        headers=herald.admin(),
    )
    assert r.status_code == 201, r.text
    (delivered,) = await smtp.wait_for(address)
    header = email.message_from_bytes(delivered.original_content)["List-Unsubscribe"]  # type: ignore[arg-type]
    link = re.search(r"<(http[^>]+)>", str(header))
    assert link, header
    await bash(unsubscribe, {**env, "UNSUBSCRIBE_URL": link.group(1)})
    after = await herald.http.get(f"/api/subscribers/{sid}/preferences", headers=herald.admin())
    assert after.json()["types"]["news"] == {"email": False}
