"""README's "Digests" section, run as written against a live Herald: the rule, three
triggers, then the digest's record once its window closed, and the daily rule.

What the test changes is what the README leaves to the reader or to time: Herald's address
for `localhost:8000`, the admin token in `herald-data/admin-token` of the folder the blocks
run in, and the window, 10 minutes in the README and 2 seconds here."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.fixtures import readme
from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.readme import json_answers
from tests.fixtures.smtp import SmtpSink, digests_to, text_of
from tests.fixtures.waiting import eventually

SECTION = "## Digests"


def blocks() -> list[str]:
    return [code for lang, code in readme.blocks(SECTION) if lang == "sh"]


async def run(herald: RunningHerald, tmp: Path, script: str, **env: str) -> str:
    script = script.replace("localhost:8000", herald.url.removeprefix("http://"))
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-eu",
        "-o",
        "pipefail",
        "-c",
        script,
        env={**os.environ, **env},
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_digests_section_as_written(
    herald: RunningHerald, smtp: SmtpSink, tmp_path: Path
) -> None:
    first, second = blocks()
    assert '"window": "10m"' in first
    (tmp_path / "herald-data").mkdir()
    (tmp_path / "herald-data" / "admin-token").write_text(ADMIN_TOKEN)
    try:
        out = await run(herald, tmp_path, first.replace('"10m"', '"2s"') + '\necho "HELD=$HELD"')
        held = out.rsplit("HELD=", 1)[1].strip()
        rule, got = json_answers(out.rsplit("HELD=", 1)[0])
        assert (
            rule
            == got
            == {"type": "comment", "window": "2s", "dailyAt": None, "groupBy": "data.postId"}
        )

        async def digest_closed() -> bool:
            r = await herald.http.get(f"/api/notifications/email/{held}", headers=herald.admin())
            return r.json()["digest"]["id"] is not None

        await eventually(digest_closed)
        # The second block runs in the shell the first one left: its TOKEN and HELD.
        shell = {"TOKEN": ADMIN_TOKEN, "HELD": held}
        digest, daily = json_answers(await run(herald, tmp_path, second, **shell))
        assert digest["status"] == "sent" and len(digest["carried"]) == 3
        assert int(held) in digest["carried"]
        assert daily == {
            "type": "weekly-report",
            "window": None,
            "dailyAt": "08:00",
            "groupBy": None,
        }
        check = await herald.http.get("/api/types/weekly-report/digest", headers=herald.admin())
        assert check.status_code == 404  # the block's DELETE

        await eventually(lambda: _arrived(smtp))
        [message] = digests_to(smtp, "ada@example.com", "comment")
        assert str(message["Subject"]) == "3 new comment notifications"
        for who in ("Grace", "Alan", "Edsger"):
            assert f"- New comment from {who}\n  {who}: lovely work!" in text_of(message)
    finally:  # the PostgreSQL stack shares its database with later tests that send comments
        # to user-42 (tests/system/test_readme_app.py counts their inbox)
        await herald.http.delete("/api/types/comment/digest", headers=herald.admin())
        await herald.http.delete("/api/subscribers/user-42", headers=herald.admin())


async def _arrived(smtp: SmtpSink) -> bool:
    await asyncio.sleep(0)
    return bool(digests_to(smtp, "ada@example.com", "comment"))
