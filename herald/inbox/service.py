"""A user's in-app notifications: catch-up, acknowledgement, read state, expiry.

Shared by the Socket.IO handlers and the inbox REST API, so both say the same thing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    String,
    Update,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts import sessions
from herald.core import dbfaults, driver
from herald.core.db import table, transaction, utcnow
from herald.core.group_commit import GroupCall
from herald.delivery.queues import Queues
from herald.inbox.acks import Acked, publish_acks
from herald.notifications.models import (
    ATTEMPT_INSERT,
    FINAL_STATUSES,
    HIDDEN_STATUSES,
    Channel,
    DeliveryAttempt,
    InAppNotification,
    Status,
    WebhookDelivery,
    attempt_row,
)
from herald.webhooks import events as webhook
from herald.webhooks.events import Event

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from herald.telemetry.service import Telemetry
    from herald.webhooks.events import WebhookEvents

CATCH_UP_LIMIT = 500
# Seconds a batch of acks waits for more before its statement runs. Nobody waits on an ack's
# answer for anything a user sees (the notification is on the screen already; the worker's
# attempt and the client's ack callback learn it 10 ms later), and at 300 notifications/s
# sharing a statement among more acks cut the database work per notification: in-app p50
# 24-31 -> 19-22 ms in the same runs (docs/benchmarks.md).
ACK_LINGER = 0.01
_MODEL = InAppNotification


async def unacknowledged(session: AsyncSession, user_id: int) -> list[InAppNotification]:
    """What a newly authenticated socket must receive: unexpired, not yet acknowledged, oldest
    first, whatever tier (or dead-letter queue) the notification has reached."""
    rows = await session.scalars(_backlog(checks_session=False), {"uid": user_id, "now": utcnow()})
    return list(rows.all())


def _waiting(
    user_id: BindParameter[int], now: BindParameter[datetime]
) -> list[ColumnElement[bool]]:
    """The user's notifications a new connection must be sent."""
    return [
        _MODEL.user_id == user_id,
        _MODEL.acked_at.is_(None),
        _MODEL.expires_at > now,
        _MODEL.status.not_in(HIDDEN_STATUSES),
    ]


@functools.cache
def _backlog(checks_session: bool) -> Select[Any]:
    """A signing-in socket's backlog, built once (every connect runs it, and building it and
    its cache key cost about as much CPU as running it); binds uid, now, and session_id when
    it `checks_session` (then a `live` flag comes first on each row, see `backlog_if_live`)."""
    uid: BindParameter[int] = bindparam("uid")
    now: BindParameter[datetime] = bindparam("now")
    if not checks_session:
        return select(_MODEL).where(*_waiting(uid, now)).order_by(_MODEL.id).limit(CATCH_UP_LIMIT)
    # Columns rather than the entity: this one runs through the driver (see backlog_if_live).
    flag = select(sessions.live(bindparam("session_id"), now).label("live")).subquery()
    return (
        select(flag.c.live, *table(_MODEL).c)
        .select_from(flag)
        .outerjoin(table(_MODEL), and_(flag.c.live, *_waiting(uid, now)))
        .order_by(_MODEL.id)
        .limit(CATCH_UP_LIMIT)
    )


async def backlog_if_live(
    db: async_sessionmaker[AsyncSession], user_id: int, session_id: int | None
) -> list[InAppNotification] | None:
    """`unacknowledged` for a socket signing in, with its login session checked in the same
    statement (one round trip, not two): None if the session has ended. No `session_id`: a
    client-token socket, bound to no session. Retried once on a dropped connection.

    One row when nothing is waiting (`live`, no notification), so an ended session and an
    empty backlog are told apart. Every socket connect runs it, so it goes through the driver
    (herald.core.driver) and builds the notifications from the rows, without an ORM load."""
    if session_id is None:
        return await dbfaults.read(db, lambda session: unacknowledged(session, user_id))
    params = {"uid": user_id, "now": utcnow(), "session_id": session_id}
    rows = await driver.read(db, _backlog(checks_session=True), params)
    if not rows or not rows[0].live:
        return None
    return [_MODEL(**_columns_of(row)) for row in rows if row.id is not None]


def _columns_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "live"}


class AckRequest(NamedTuple):
    """One socket's acknowledgement: whose notifications, under which login session (None: a
    client-token socket, bound to none), which ids, and the transport the socket really uses
    (`polling` or `websocket`)."""

    user_id: int
    session_id: int | None
    ids: tuple[int, ...]
    sid: str
    transport: str


async def _acknowledge_one(session: AsyncSession, request: AckRequest, now: datetime) -> list[Any]:
    """One request's ack and its audit rows, in the caller's transaction."""
    params = {
        "ids": list(request.ids),
        "recipient": request.user_id,
        "session_id": request.session_id,
        "now": now,
        "sid": request.sid,
        "transport": request.transport,
    }
    statement = _acknowledge(request.session_id is not None)
    rows = list((await session.execute(statement, params)).all())
    if rows:
        audit = _ack_audit_rows(rows, now, request.sid, request.transport)
        await session.execute(ATTEMPT_INSERT, audit)
    return rows


class Read(NamedTuple):
    """A read's outcome: the ids it marked, and the user's unread count after it."""

    marked: list[int]
    unread: int


async def unread_count(session: AsyncSession, user_id: int) -> int:
    count = await session.scalar(
        select(func.count()).where(
            _MODEL.user_id == user_id,
            _MODEL.is_read.is_(False),
            _MODEL.status.not_in(HIDDEN_STATUSES),
        )
    )
    return int(count or 0)


def _ack_events(rows: Sequence[Any], request: AckRequest, now: datetime) -> list[Event]:
    """`acked` for each row, and `delivered` for those this ack delivered (the others were
    delivered earlier, by a catch-up emit)."""
    events = []
    for row in rows:
        common = dict(
            channel=Channel.INAPP,
            notification_id=row.id,
            type=row.type,
            status=Status.DELIVERED,
            user_id=request.user_id,
            socketId=request.sid,
        )
        if row.delivered_at == now:
            events.append(webhook.notification_event(webhook.DELIVERED, **common))
        events.append(webhook.notification_event(webhook.ACKED, **common))
    return events


def _history(n: InAppNotification, status: str, sid: str, method: str) -> DeliveryAttempt:
    return DeliveryAttempt.of(n, status, n.queue_name or "inapp", method=method, socket_id=sid)


@functools.cache
def _acknowledge(checks_session: bool) -> Update:
    """`acknowledge`'s UPDATE, built once; binds ids, recipient, session_id, now, sid, transport."""
    c = table(_MODEL).c
    now: BindParameter[datetime] = bindparam("now")
    return (
        update(table(_MODEL))
        .where(
            c.id.in_(bindparam("ids", expanding=True)),
            c.user_id == bindparam("recipient"),
            c.acked_at.is_(None),
            sessions.live(bindparam("session_id"), now) if checks_session else true(),
        )
        .values(_acked_values(now, bindparam("sid"), bindparam("transport")))
        .returning(c.id, c.telemetry_id, c.queue_name, c.attempts, c.type, c.delivered_at)
    )


def _acked_values(
    now: BindParameter[datetime], sid: ColumnElement[str], transport: ColumnElement[str]
) -> dict[str, Any]:
    """What an ack sets on its row, for `_acknowledge` and `_acknowledge_many`."""
    c = table(_MODEL).c
    return dict(
        acked_at=now,
        socket_id=sid,
        status=Status.DELIVERED,
        updated_at=now,
        delivered_at=func.coalesce(c.delivered_at, now),
        # A worker's emit can't tell the transport; a catch-up says so itself.
        delivered_via=case((c.delivered_via == "catch-up", "catch-up"), else_=transport),
    )


def _ack_audit_rows(
    rows: Sequence[Any], now: datetime, sid: str, transport: str
) -> list[dict[str, Any]]:
    """An `acknowledged` audit row for each acked row, and a `delivered` one for each that this
    ack delivered: the attempt waiting for the ack then has nothing left to write (rows a
    catch-up emit delivered got their `delivered` row from it)."""
    return [
        attempt_row(
            Channel.INAPP,
            row.id,
            row.attempts,
            status,
            row.queue_name or "inapp",
            method=transport,
            socket_id=sid,
        )
        for status in ("acknowledged", Status.DELIVERED)
        for row in rows
        if status == "acknowledged" or row.delivered_at == now
    ]


def _arrays(requests: Sequence[AckRequest], now: datetime) -> dict[str, Any]:
    """`_acknowledge_many`'s parameters: one array element per acknowledged id."""
    columns: dict[str, list[Any]] = {name: [] for name in _ACK_COLUMNS}
    for k, request in enumerate(requests):
        for notification_id in request.ids:
            values = (
                notification_id,
                request.user_id,
                request.session_id,
                request.sid,
                request.transport,
                k,
            )
            for name, value in zip(_ACK_COLUMNS, values, strict=True):
                columns[name].append(value)
    return {**{f"ack_{name}": values for name, values in columns.items()}, "now": now}


_ACK_COLUMNS = ("id", "recipient", "session_id", "sid", "transport", "caller")


@functools.cache
def _acknowledge_many() -> Select[Any]:
    """Many sockets' acks and their audit rows as one PostgreSQL statement, built once; binds
    an array per name in `_ACK_COLUMNS` as `ack_<name>` (`caller`: which request an id came
    with) and now.
    Returns what it acknowledged, with `caller`.

    The rows are locked in id order before they are updated: two batches (two API servers, or
    one server's batch and a reader's) that want the same rows then queue, never deadlock."""
    types = (Integer, Integer, Integer, String, String, Integer)
    # Named apart from any column: a parameter named like one of an UPDATE's columns is taken
    # as a value for it.
    arrays: list[BindParameter[Any]] = [
        bindparam(f"ack_{name}", type_=ARRAY(t))
        for name, t in zip(_ACK_COLUMNS, types, strict=True)
    ]
    acks = select(func.unnest(*arrays).table_valued(*_ACK_COLUMNS).render_derived()).cte("acks")
    t = table(_MODEL)
    c = t.c
    now: BindParameter[datetime] = bindparam("now")
    mine = and_(c.id == acks.c.id, c.user_id == acks.c.recipient, c.acked_at.is_(None))
    locked = select(c.id).join(acks, mine).order_by(c.id).with_for_update(of=t).cte("locked")
    in_session = or_(acks.c.session_id.is_(None), sessions.live(acks.c.session_id, now))
    acked = (
        update(t)
        .where(mine, in_session, c.id.in_(select(locked.c.id)))
        .values(_acked_values(now, acks.c.sid, acks.c.transport))
        .returning(
            c.id,
            c.telemetry_id,
            c.queue_name,
            c.attempts,
            c.type,
            c.delivered_at,
            acks.c.caller,
            acks.c.sid,
            acks.c.transport,
        )
    ).cte("acked")

    def audit(status: str) -> Select[Any]:
        return select(
            literal(Channel.INAPP.value),
            acked.c.id,
            acked.c.attempts,
            now,
            literal(status),
            func.coalesce(acked.c.queue_name, "inapp"),
            acked.c.transport,
            acked.c.sid,
        )

    written = insert(table(DeliveryAttempt)).from_select(
        [
            "channel",
            "notification_id",
            "attempt",
            "timestamp",
            "status",
            "queue_name",
            "delivery_method",
            "socket_id",
        ],
        union_all(
            audit("acknowledged"), audit(Status.DELIVERED).where(acked.c.delivered_at == now)
        ),
    )
    return select(acked).add_cte(written.cte("audit"))


@dataclass(eq=False)
class Inbox:
    """What a subscriber's sockets do with their notifications: catch up, acknowledge, read."""

    db: async_sessionmaker[AsyncSession]
    queues: Queues
    webhooks: WebhookEvents
    telemetry: Telemetry
    redis: aioredis.Redis
    redis_url: str

    def __post_init__(self) -> None:
        self.ack_batches = self._ack_batches()

    async def record_catch_up(self, n: InAppNotification, sid: str) -> None:
        """A catch-up emit reached a live socket: that is a delivery, whatever the ladder says."""
        if n.status == Status.DELIVERED:
            return
        now = utcnow()
        async with transaction(self.db) as session:
            row = await session.get(_MODEL, n.id, with_for_update=True)
            if row is None or row.status in FINAL_STATUSES:
                return
            was_dead = row.status == Status.FAILED
            row.status, row.delivered_at, row.socket_id = Status.DELIVERED, now, sid
            row.delivered_via = "catch-up"
            session.add(_history(row, "delivered", sid, "catch-up"))
            announced = await self.webhooks.stage(
                session, [webhook.of_row(webhook.DELIVERED, row, via="catch-up", socketId=sid)]
            )
        await self.webhooks.dispatch(announced)
        self.telemetry.stages.notification(
            n, "channel", "channel:inapp", outcome="socket emitted", via="catch-up", socketId=sid
        )
        if was_dead:
            await self.queues.forget(Channel.INAPP, n.id)

    async def acknowledge(
        self,
        user_id: int,
        session_id: int | None,
        ids: Sequence[int],
        sid: str,
        transport: str = "websocket",
    ) -> list[int] | None:
        """Mark the user's own notifications received on this socket; returns the ids acked, or
        None if the socket's login session has ended (then nothing is marked; no `session_id`: the
        caller checked what the socket authenticated with).

        Every socket's acks, a statement each, were a third of a busy API server's CPU: acks that
        arrive together are recorded together (`_ack_batches`)."""
        request = AckRequest(user_id, session_id, tuple(ids), sid, transport)
        return (await self.ack_batches.get([request]))[request]

    def _ack_batches(self) -> GroupCall[AckRequest, list[int] | None]:
        """Acknowledgements from concurrent sockets recorded in one statement, their audit rows
        with them, and announced to the waiting workers in one message."""

        async def record(requests: set[AckRequest]) -> dict[AckRequest, list[int] | None]:
            return await self._acknowledge_all(list(requests))

        # Two batches at once: with one, a lone ack waited out the batch before it, which cost
        # ~2 ms at the in-app p50 at 100/s; two kept the p50 and the CPU saved at 300/s. Each
        # batch waits ACK_LINGER first, so that more acks share its statement.
        return GroupCall(record, in_flight=2, linger=ACK_LINGER)

    async def _acknowledge_all(
        self, requests: list[AckRequest]
    ) -> dict[AckRequest, list[int] | None]:
        """The acks of `requests`: on PostgreSQL with no webhook to stage, one UPDATE ... RETURNING
        whose condition carries each socket's session check, with the audit rows (a data-modifying
        WITH); otherwise a transaction per request. A row in the dead-letter queue is one whose
        queue is the DLQ's."""
        now = utcnow()
        rows: list[list[Any]] = [[] for _ in requests]
        announced: list[WebhookDelivery] = []
        listened = await self.webhooks.wants(webhook.ACKED, webhook.DELIVERED)
        if not listened and driver.on_postgres(self.db):
            for row in await driver.fetch(self.db, _acknowledge_many(), _arrays(requests, now)):
                rows[row.caller].append(row)
        else:
            async with self.db() as session:
                for k, request in enumerate(requests):
                    async with session.begin():
                        rows[k] = await _acknowledge_one(session, request, now)
                        events = _ack_events(rows[k], request, now)
                        announced += await self.webhooks.stage(session, events)
        acked: dict[AckRequest, list[int] | None] = {}
        for request, own in zip(requests, rows, strict=True):
            ended = not own and await self._session_ended(request.session_id)
            acked[request] = None if ended else sorted(row.id for row in own)
        await self.webhooks.dispatch(announced)
        await self._after_acks(requests, rows)
        return acked

    async def _session_ended(self, session_id: int | None) -> bool:
        if session_id is None:
            return False
        async with self.db() as session:
            return not await sessions.is_live(session, session_id)

    async def _after_acks(self, requests: list[AckRequest], rows: list[list[Any]]) -> None:
        """Telemetry, the dead-letter queue left, and the waiting worker attempts woken."""
        dead_letters = self.queues.dead_letter(Channel.INAPP).queue
        for request, own in zip(requests, rows, strict=True):
            for row in own:
                # The rows are the statement's RETURNING columns: in-app ones, without a channel.
                self.telemetry.stages.event(
                    row.telemetry_id,
                    "ack",
                    "sockets",
                    channel=Channel.INAPP.value,
                    notification_id=row.id,
                    detail={"socketId": request.sid},
                )
                if row.queue_name == dead_letters:  # received after all: it leaves the DLQ
                    await self.queues.forget(Channel.INAPP, row.id)
        acks = [
            Acked(sorted(row.id for row in own), request.sid, request.transport)
            for request, own in zip(requests, rows, strict=True)
            if own
        ]
        await publish_acks(self.redis, self.redis_url, acks)

    async def mark_read(self, user_id: int, ids: Sequence[int] | None) -> Read:
        """Mark some (or, with None, all) of the user's unread notifications read; what was
        marked, and how many stay unread (counted in the same transaction)."""
        condition = [_MODEL.user_id == user_id, _MODEL.is_read.is_(False)]
        if ids is not None:
            condition.append(_MODEL.id.in_(ids))
        now = utcnow()
        async with transaction(self.db) as session:
            found = (await session.execute(select(_MODEL.id, _MODEL.type).where(*condition))).all()
            marked = [row.id for row in found]
            if marked:
                await session.execute(
                    update(_MODEL)
                    .where(_MODEL.id.in_(marked))
                    .values(is_read=True, read_at=now, updated_at=now)
                )
            read = [
                webhook.notification_event(
                    webhook.READ,
                    channel=Channel.INAPP,
                    notification_id=row.id,
                    type=row.type,
                    status="read",
                    user_id=user_id,
                    readAt=now.isoformat(),
                )
                for row in found
            ]
            announced = await self.webhooks.stage(session, read)
            unread = await unread_count(session, user_id)
        await self.webhooks.dispatch(announced)
        return Read(marked, unread)
