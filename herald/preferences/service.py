"""Reading and writing preference switches, declared types, and address opt-outs.

Critical types are read through a per-process cache (`TypeRegistry`, `CACHE_SECONDS`), so the
trigger costs no query for them: a declaration takes effect at once on the server that took it
and within `CACHE_SECONDS` on the others, as for API keys (herald.apikeys.service).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

from sqlalchemy import Executable, and_, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core import dbfaults
from herald.core.db import transaction, utcnow
from herald.core.group_commit import GroupCall
from herald.preferences.models import ANY, AddressOptOut, NotificationType, Preference
from herald.preferences.rules import DEFAULT_CRITICAL, Switches
from herald.preferences.schemas import PreferencesOut, TypeOut

CACHE_SECONDS = 5.0


async def switches_of(session: AsyncSession, user_id: int) -> dict[tuple[str, str], bool]:
    rows = await session.execute(
        select(Preference.type, Preference.channel, Preference.enabled).where(
            Preference.user_id == user_id
        )
    )
    return {(kind, channel): enabled for kind, channel, enabled in rows}


async def read(db: async_sessionmaker[AsyncSession], user_id: int) -> Switches:
    return await dbfaults.read(db, lambda session: switches_of(session, user_id))


async def change(
    db: async_sessionmaker[AsyncSession],
    user_id: int,
    named: Mapping[tuple[str, str], bool | None],
    whole: Iterable[str] = (),
) -> Switches:
    """Set the named switches (None removes one); a type in `whole` loses its per-channel
    switches first. One transaction, an upsert per switch: concurrent changes to different
    switches (two one-click unsubscribes) both land. Answers every switch afterwards."""
    now = utcnow()
    async with transaction(db) as session:
        whole = list(whole)
        if whole:
            await session.execute(
                delete(Preference).where(
                    Preference.user_id == user_id,
                    Preference.type.in_(whole),
                    Preference.channel != ANY,
                )
            )
        gone = [key for key, on in named.items() if on is None]
        for kind, channel in gone:
            await session.execute(
                delete(Preference).where(
                    Preference.user_id == user_id,
                    Preference.type == kind,
                    Preference.channel == channel,
                )
            )
        rows = [
            {"user_id": user_id, "type": k, "channel": c, "enabled": on, "updated_at": now}
            for (k, c), on in named.items()
            if on is not None
        ]
        if rows:
            await session.execute(_upsert(session, rows))
        return await switches_of(session, user_id)


def _upsert(session: AsyncSession, rows: list[dict[str, object]]) -> Executable:
    """INSERT ... ON CONFLICT DO UPDATE, which PostgreSQL and SQLite both speak."""
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = (postgresql.insert if postgres else sqlite.insert)(Preference).values(rows)
    return statement.on_conflict_do_update(
        index_elements=["user_id", "type", "channel"],
        set_={"enabled": statement.excluded.enabled, "updated_at": statement.excluded.updated_at},
    )


def document(subscriber_id: str, switches: Switches) -> PreferencesOut:
    """The switches in the shape PUT takes: a type set only as a whole is a bool."""
    channels = {c: on for (k, c), on in switches.items() if k == ANY}
    per_type: dict[str, dict[str, bool]] = {}
    for (kind, channel), on in sorted(switches.items()):
        if kind != ANY:
            per_type.setdefault(kind, {})[channel] = on
    types: dict[str, bool | dict[str, bool]] = {
        kind: (chosen[ANY] if list(chosen) == [ANY] else chosen)
        for kind, chosen in per_type.items()
    }
    return PreferencesOut(subscriber_id=subscriber_id, channels=channels, types=types)


# --- Notification types ----------------------------------------------------------------
class TypeRegistry:
    """Which types are critical, cached per process (see the module's docstring)."""

    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db
        self._declared: dict[str, bool] = {}
        self._loaded_at = -CACHE_SECONDS
        self._loading: asyncio.Task[dict[str, bool]] | None = None

    async def is_critical(self, kind: str) -> bool:
        if time.monotonic() - self._loaded_at >= CACHE_SECONDS:
            await self._refresh()
        return self._declared.get(kind, kind in DEFAULT_CRITICAL)

    async def _refresh(self) -> None:
        # Concurrent triggers on a stale cache share one query.
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self._load())
        self._declared = await asyncio.shield(self._loading)
        self._loaded_at = time.monotonic()

    async def _load(self) -> dict[str, bool]:
        async def query(session: AsyncSession) -> dict[str, bool]:
            rows = await session.execute(select(NotificationType.type, NotificationType.critical))
            return {kind: critical for kind, critical in rows}

        return await dbfaults.read(self.db, query)

    async def listed(self) -> list[TypeOut]:
        async def query(session: AsyncSession) -> list[NotificationType]:
            return list(await session.scalars(select(NotificationType)))

        rows = {t.type: t for t in await dbfaults.read(self.db, query)}
        out = [_type_out(rows[k]) for k in sorted(rows)]
        defaults = DEFAULT_CRITICAL - rows.keys()
        out += [TypeOut(type=k, critical=True, declared=False) for k in defaults]
        return sorted(out, key=lambda t: t.type)

    async def one(self, kind: str) -> TypeOut:
        async with self.db() as session:
            row = await session.get(NotificationType, kind)
        if row is None:
            return TypeOut(type=kind, critical=kind in DEFAULT_CRITICAL, declared=False)
        return _type_out(row)

    async def declare(self, kind: str, critical: bool) -> tuple[TypeOut, bool]:
        """Create or change a type; whether it was new. This server sees it at once."""
        async with transaction(self.db) as session:
            row = await session.get(NotificationType, kind, with_for_update=True)
            created = row is None
            if row is None:
                row = NotificationType(type=kind, critical=critical)
                session.add(row)
            else:
                row.critical = critical
                row.updated_at = utcnow()
            await session.flush()
            out = _type_out(row)
        self._loaded_at = -CACHE_SECONDS
        return out, created


def _type_out(row: NotificationType) -> TypeOut:
    return TypeOut(type=row.type, critical=row.critical, declared=True, updated_at=row.updated_at)


# --- Plain addresses ---------------------------------------------------------------------
def address_lookup(db: async_sessionmaker[AsyncSession]) -> GroupCall[tuple[str, str], bool]:
    """Which (address, type) pairs of concurrent triggers opted out, in one query."""

    async def fetch(keys: set[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        emails, kinds = {e for e, _ in keys}, {k for _, k in keys}

        async def query(session: AsyncSession) -> dict[tuple[str, str], bool]:
            rows = await session.execute(
                select(AddressOptOut.email, AddressOptOut.type).where(
                    and_(AddressOptOut.email.in_(emails), AddressOptOut.type.in_(kinds))
                )
            )
            return {(e, k): True for e, k in rows if (e, k) in keys}

        return await dbfaults.read(db, query)

    return GroupCall(fetch, in_flight=1)


async def address_opted_out(session: AsyncSession, email: str) -> set[str]:
    rows = await session.scalars(select(AddressOptOut.type).where(AddressOptOut.email == email))
    return set(rows)


async def set_address(
    db: async_sessionmaker[AsyncSession], email: str, wanted: Mapping[str, bool]
) -> None:
    """`wanted`: type -> whether the address receives it."""
    async with transaction(db) as session:
        await session.execute(
            delete(AddressOptOut).where(
                AddressOptOut.email == email, AddressOptOut.type.in_(list(wanted))
            )
        )
        for kind, on in wanted.items():
            if not on:
                session.add(AddressOptOut(email=email, type=kind, created_at=utcnow()))
