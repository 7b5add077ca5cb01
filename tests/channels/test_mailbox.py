"""The capture mailbox: its folder is made safely by processes that start at once (a cluster's
API servers and workers share one data folder), and the operations endpoints read and empty it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from herald.channels.mailbox import CaptureMailbox
from tests.fixtures.herald import RunningHerald
from tests.fixtures.waiting import eventually


def test_a_mailbox_folder_another_process_has_begun_is_completed(tmp_path: Path) -> None:
    """Another process made the folder and not yet its `tmp`, `new` and `cur`: Python's
    `Maildir(create=True)` took it as made, and storing a message then failed."""
    (tmp_path / "mailbox").mkdir()
    box = CaptureMailbox(tmp_path).box
    key = box.add(b"Subject: hello\r\n\r\nbody\r\n")
    assert box.get_message(key)["Subject"] == "hello"


def test_many_processes_make_the_same_mailbox_at_once(tmp_path: Path) -> None:
    ready = threading.Barrier(16)
    failures: list[BaseException] = []

    def start() -> None:
        ready.wait()
        try:
            CaptureMailbox(tmp_path)
        except BaseException as exc:  # whatever it is, it is the failure
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert {p.name for p in (tmp_path / "mailbox").iterdir()} >= {"tmp", "new", "cur"}


class TestOperationsEndpoints:
    async def test_list_read_and_empty_the_mailbox(self, herald_factory: Any) -> None:
        herald: RunningHerald = await herald_factory(email_host=None)  # the capture mailbox
        await herald.signup(username="boxed")

        async def listed() -> list[dict[str, Any]]:
            r = await herald.http.get("/api/ops/mailbox", headers=herald.admin())
            assert r.status_code == 200, r.text
            return r.json()["messages"]  # type: ignore[no-any-return]

        [message] = await eventually(listed)
        assert message["to"] == ["boxed@example.com"]
        one = await herald.http.get(f"/api/ops/mailbox/{message['id']}", headers=herald.admin())
        assert one.status_code == 200 and "boxed" in one.json()["text"]
        missing = await herald.http.get("/api/ops/mailbox/nothing-here", headers=herald.admin())
        assert missing.status_code == 404
        cleared = await herald.http.delete("/api/ops/mailbox", headers=herald.admin())
        assert cleared.json() == {"deleted": 1}
        assert await listed() == []

    async def test_off_when_smtp_is_configured_and_closed_to_strangers(
        self, herald: RunningHerald
    ) -> None:
        off = await herald.http.get("/api/ops/mailbox", headers=herald.admin())
        assert off.status_code == 404 and off.json()["error"]["code"] == "mailbox_disabled"
        # The admin check comes first: a stranger learns nothing about the mailbox.
        stranger = await herald.http.get("/api/ops/mailbox")
        assert stranger.status_code == 401
        cleared = await herald.http.delete("/api/ops/mailbox", headers=herald.admin())
        assert cleared.status_code == 404
