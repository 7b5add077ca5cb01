"""Whether a login session still holds, as SQL a statement can carry, and what ends the sockets
of sessions that ended (the realtime layer provides it: herald.realtime.sessions)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from sqlalchemy import BindParameter, ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.accounts.models import Session
from herald.core.db import utcnow


class SessionSockets(Protocol):
    """Ends every socket that authenticated with one of these (ended) sessions, on whichever
    server holds it; how many."""

    async def sessions(self, session_ids: Iterable[int]) -> int: ...


def live(
    session_id: int | ColumnElement[int], now: datetime | BindParameter[datetime] | None = None
) -> ColumnElement[bool]:
    """A condition true while the session is neither revoked nor expired: a statement that
    acts for a socket's user can carry it instead of asking first. A statement built once
    passes bind parameters (or a column of its own) for both."""
    return exists().where(
        Session.id == session_id,
        Session.revoked_at.is_(None),
        Session.expires_at > (utcnow() if now is None else now),
    )


async def is_live(session: AsyncSession, session_id: int) -> bool:
    """Whether the session is neither revoked nor expired."""
    return bool(await session.scalar(select(live(session_id))))
