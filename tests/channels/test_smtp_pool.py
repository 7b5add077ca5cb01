"""The SMTP connection pool against a real aiosmtpd server that can drop its clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.mime.text import MIMEText
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from herald.channels.smtp_pool import SmtpPool


class Server:
    """Accepts every message unless told otherwise; remembers each connection it was given."""

    def __init__(self) -> None:
        self.connections: list[SMTP] = []
        self.accepted: list[str] = []
        self.reply: str = "250 2.0.0 accepted"
        self.hang_up_on_data = False

    def protocol(self) -> SMTP:
        self.connections.append(SMTP(self))
        return self.connections[-1]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.hang_up_on_data:
            assert server.transport is not None
            server.transport.close()
        elif self.reply.startswith("250"):
            self.accepted.append(str(envelope.rcpt_tos[0]))
        return self.reply

    def drop_everyone(self) -> None:
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.close()


@pytest.fixture
async def server_and_pool() -> AsyncIterator[tuple[Server, SmtpPool]]:
    server = Server()
    listening = await asyncio.get_running_loop().create_server(server.protocol, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    pool = SmtpPool(lambda: {"hostname": "127.0.0.1", "port": port, "timeout": 5}, size=2)
    yield server, pool
    await pool.close()
    listening.close()


def message(to: str) -> tuple[str, list[str], bytes]:
    """`SmtpPool.send`'s arguments: the envelope and the flattened message."""
    msg = MIMEText("hello")
    msg["From"], msg["To"], msg["Subject"] = "herald@example.com", to, "pool"
    return "herald@example.com", [to], msg.as_bytes()


async def test_one_connection_carries_many_messages(server_and_pool: Any) -> None:
    server, pool = server_and_pool
    for i in range(3):
        await pool.send(*message(f"u{i}@example.com"))
    assert server.accepted == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert len(server.connections) == 1


async def test_an_idle_connection_the_server_dropped_is_replaced(server_and_pool: Any) -> None:
    server, pool = server_and_pool
    await pool.send(*message("first@example.com"))
    server.drop_everyone()  # and the pool has not noticed yet: it finds out mid-send
    await pool.send(*message("second@example.com"))  # no error reaches the caller
    assert server.accepted == ["first@example.com", "second@example.com"]
    assert len(server.connections) == 2


async def test_a_refusal_closes_the_connection(server_and_pool: Any) -> None:
    server, pool = server_and_pool
    server.reply = "451 4.3.0 try later"
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await pool.send(*message("later@example.com"))
    assert refused.value.code == 451
    server.reply = "250 2.0.0 accepted"
    await pool.send(*message("later@example.com"))
    assert server.accepted == ["later@example.com"]
    assert len(server.connections) == 2  # the refused message's connection was not reused


async def test_a_new_connection_that_drops_is_not_retried(server_and_pool: Any) -> None:
    server, pool = server_and_pool
    server.hang_up_on_data = True
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await pool.send(*message("gone@example.com"))
    assert len(server.connections) == 1 and server.accepted == []
