"""The capture mailbox: an SMTP server that stores every message it receives, never relays.

It is what `herald serve` sends email to when no EMAIL_HOST is configured, so a laptop needs no
mail account and the email channel still speaks real SMTP. Messages go to a Maildir in the data
folder (safe for several processes), read back through the operations API.
"""

from __future__ import annotations

import asyncio
import mailbox
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class _StoreHandler:
    def __init__(self, box: mailbox.Maildir):
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        header = (
            f"X-Herald-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Herald-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        key = await asyncio.to_thread(self.box.add, header + raw)
        return f"250 2.0.0 Ok: stored as {key}"


class CaptureMailbox:
    def __init__(self, data_dir: Path):
        self.path = data_dir / "mailbox"
        # The Maildir's folders made here, each only if missing: `Maildir(create=True)` checks,
        # then creates, and the processes of a cluster starting at once raced on it (one
        # failed with FileExistsError).
        for folder in (self.path, self.path / "tmp", self.path / "new", self.path / "cur"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.box = mailbox.Maildir(self.path, create=False)

    async def serve(self, host: str, port: int) -> tuple[asyncio.Server, int]:
        """Start the SMTP listener inside the running event loop; returns it and its port."""
        handler = _StoreHandler(self.box)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="herald-capture", data_size_limit=25 * 2**20),
            host=host,
            port=port,
        )
        bound = server.sockets[0].getsockname()[1]
        return server, int(bound)

    def messages(self) -> list[CapturedMessage]:
        items = [m for key in self.box.keys() if (m := self.get(key))]  # noqa: SIM118 - iterating a Maildir yields messages
        return sorted(items, key=lambda m: (m.received_at, m.id), reverse=True)

    def get(self, key: str) -> CapturedMessage | None:
        try:
            stored = self.box.get_message(key)
        except (KeyError, FileNotFoundError):  # unknown, or cleared by another process
            return None
        return _parse(key, stored.as_bytes(), datetime.fromtimestamp(stored.get_date(), UTC))

    def clear(self) -> int:
        keys = list(self.box.keys())
        for key in keys:
            self.box.discard(key)
        return len(keys)


@dataclass
class CapturedMessage:
    id: str
    received_at: datetime
    envelope_from: str
    envelope_to: list[str]
    headers: dict[str, str]
    subject: str
    text: str
    html: str | None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "receivedAt": self.received_at,
            "from": self.headers.get("From"),
            "to": self.envelope_to,
            "subject": self.subject,
            "messageId": self.headers.get("Message-ID"),
        }


def _parse(key: str, raw: bytes, received: datetime) -> CapturedMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    text_part = msg.get_body(("plain",))
    html_part = msg.get_body(("html",))
    return CapturedMessage(
        id=key,
        received_at=received,
        envelope_from=str(msg.get("X-Herald-Envelope-From", "")),
        envelope_to=[a.strip() for a in str(msg.get("X-Herald-Envelope-To", "")).split(",") if a],
        headers={k: str(v) for k, v in msg.items() if not k.startswith("X-Herald-Envelope")},
        subject=str(msg.get("Subject", "")),
        text=text_part.get_content() if text_part else "",
        html=html_part.get_content() if html_part else None,
    )
