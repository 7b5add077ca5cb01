"""The capture mailbox's folder is made safely by processes that start at once (a cluster's
API servers and workers share one data folder)."""

from __future__ import annotations

import threading
from pathlib import Path

from herald.channels.mailbox import CaptureMailbox


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
