"""README's "Templates" block, run as written (bash and curl) against a live Herald: the
answers it prints, and the email it makes the SMTP server receive.

What the test supplies is what the README leaves to the reader: Herald itself (the fixture,
instead of `make run`), its port for `localhost:8000`, and `herald-data/admin-token` holding
the test Herald's admin token."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path

from tests.fixtures import readme
from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.readme import json_answers
from tests.fixtures.smtp import SmtpSink

SECTION = "## Templates"


def block() -> str:
    [found] = [code for lang, code in readme.blocks(SECTION) if lang == "sh"]
    return str(found)


async def run(herald: RunningHerald, tmp: Path, script: str) -> str:
    (tmp / "herald-data").mkdir()
    (tmp / "herald-data" / "admin-token").write_text(ADMIN_TOKEN + "\n")
    script = script.replace("localhost:8000", herald.url.removeprefix("http://"))
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-eu",
        "-c",
        script,
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_templates_block_runs_as_written(
    herald: RunningHerald, smtp: SmtpSink, tmp_path: Path
) -> None:
    stored, preview, refused, subscriber, sent, listed, deleted = json_answers(
        await run(herald, tmp_path, block())
    )
    assert stored["source"] == "stored" and stored["locale"] == "de", stored
    assert preview["subject"] == "Neuer Kommentar: Schön", preview
    assert (preview["source"], preview["templateLocale"]) == ("stored", "de")
    assert str(preview["text"]).startswith("Hallo Grete,")
    details = refused["error"]["details"]  # type: ignore[index]
    assert [(d["field"], d["line"]) for d in details] == [("subject", 1)], refused
    assert subscriber["locale"] == "de-CH"
    assert sent["count"] == 1, sent
    types = {t["type"]: t for t in listed["types"]}  # type: ignore[attr-defined]
    assert types["signup"]["builtIn"] and [s["locale"] for s in types["comment"]["locales"]] == [
        "de"
    ]
    assert deleted == {"type": "comment", "locale": "de", "deleted": True}

    [envelope] = await smtp.wait_for("grete@example.com")
    message = message_from_bytes(envelope.original_content, policy=policy.default)
    assert message["Subject"] == "Neuer Kommentar: Schöne Arbeit"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.startswith("Hallo grete@example.com,") and "https://app.example.com/posts/7" in text
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<p>Grace: &lt;3</p>" in html

    after = await herald.http.get("/api/templates/comment/de", headers=herald.admin())
    assert after.json()["source"] == "builtIn"
