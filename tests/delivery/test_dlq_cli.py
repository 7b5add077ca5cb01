"""`herald dlq` against a running Herald's database and Redis (attaching to its embedded one)."""

from __future__ import annotations

import json

from tests.fixtures.herald import RunningHerald
from tests.fixtures.notifications import wait_email, welcome_id
from tests.fixtures.processes import herald_cli
from tests.fixtures.smtp import SmtpSink


class TestDlqCommands:
    async def test_list_show_replay(self, herald: RunningHerald, smtp: SmtpSink) -> None:
        smtp.fail_with = "550 5.1.1 unknown user"
        user = await herald.signup()
        nid = welcome_id(user)
        await wait_email(herald, nid, "failed")

        listed = await herald_cli(herald, "dlq", "list", "--channel", "email", "--json")
        assert listed.returncode == 0, listed.stderr
        [letter] = [d for d in json.loads(listed.stdout) if d["notificationId"] == nid]
        assert letter["type"] == "signup" and "550" in letter["failureReason"]

        table = await herald_cli(herald, "dlq", "list")
        assert str(nid) in table.stdout and user["email"] in table.stdout

        shown = await herald_cli(herald, "dlq", "show", "email", str(nid))
        assert json.loads(shown.stdout)["escalationHistory"][0]["toQueue"] == "mail-dlq"

        smtp.fail_with = None
        replayed = await herald_cli(herald, "dlq", "replay", "email", str(nid), "--note", "cli")
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.strip() == f"replayed 1: {nid}"
        body = await wait_email(herald, nid, "delivered")
        assert body["escalationHistory"][-1]["reason"] == "replay: cli"

    async def test_discard_needs_a_reason_and_a_selection(self, herald: RunningHerald) -> None:
        no_reason = await herald_cli(herald, "dlq", "discard", "email", "1")
        assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
        nothing = await herald_cli(herald, "dlq", "replay", "email")
        assert nothing.returncode == 2 and "--all" in nothing.stderr
        missing = await herald_cli(herald, "dlq", "show", "email", "999999")
        assert missing.returncode == 1 and "no email notification 999999" in missing.stderr
