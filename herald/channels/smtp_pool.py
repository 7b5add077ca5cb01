"""Open SMTP connections kept for the next message, as mail relays expect from a bulk sender.

A connection per message costs a TCP handshake, a greeting, EHLO, often STARTTLS and AUTH, and
QUIT around one MAIL/RCPT/DATA exchange: most of a worker's SMTP time. A connection goes back to
the pool only after a message it carried was accepted; any failure closes it. A reused
connection the server has meanwhile dropped is replaced once, transparently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosmtplib

# Servers drop idle clients (often after 60-300 s) and cap messages per connection (often 100).
MAX_IDLE_SECONDS = 30.0
MAX_MESSAGES = 100
QUIT_TIMEOUT = 1.0


@dataclass
class _Connection:
    smtp: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


class SmtpPool:
    def __init__(self, options: Callable[[], dict[str, Any]], size: int) -> None:
        self._options = options  # read per connection: settings may carry fresh credentials
        self.size = size
        self._idle: list[_Connection] = []

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        """Send one flattened message to the envelope's addresses; returns the server's final
        response. Raises what aiosmtplib raises for the message itself (refused, 4xx/5xx,
        timeout, unreachable)."""
        fresh = False
        while True:
            conn, reused = await self._acquire(fresh)
            try:
                _, response = await conn.smtp.sendmail(sender, list(recipients), message)
            except aiosmtplib.SMTPServerDisconnected:
                await self._discard(conn)
                if not reused:
                    raise
                fresh = True  # the server had dropped an idle one: once more, on a new one
                continue
            except BaseException:
                await self._discard(conn)
                raise
            await self._release(conn)
            return response

    async def _acquire(self, fresh: bool = False) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.smtp.is_connected and now - conn.idle_since < MAX_IDLE_SECONDS:
                return conn, True
            await self._discard(conn)
        smtp = aiosmtplib.SMTP(**self._options())
        await smtp.connect()
        return _Connection(smtp), False

    async def _release(self, conn: _Connection) -> None:
        conn.sent += 1
        if conn.sent >= MAX_MESSAGES or len(self._idle) >= self.size:
            await self._discard(conn, polite=True)
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def _discard(self, conn: _Connection, polite: bool = False) -> None:
        if polite and conn.smtp.is_connected:
            # Say goodbye, but never let a silent server hold up a worker's shutdown.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.smtp.quit(), QUIT_TIMEOUT)
                return
        conn.smtp.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._discard(conn, polite=True) for conn in idle))
