"""Holding a digested type's emails, opening windows, and closing each window exactly once.

The order that makes "nothing lost, nothing twice" hold, on PostgreSQL and SQLite alike:

1. A trigger commits its held emails (`status = 'held'`, with their group key) in the group
   commit, like any row; *then* `opened` makes sure an open digest waits for each key
   (INSERT ... ON CONFLICT DO NOTHING on the partial unique index of open digests).
2. `close` is one transaction: it flips the digest from `open` to `sent` (only if it was open:
   a second closer, a retried job or the sweep, changes nothing and stops), binds every held
   email of its key to it, and creates the digest email from them.

So a held email is always committed before the open digest it relies on was seen open, and
that digest's close binds it: its flip, and so its binding statement, comes after. An email
committed while its window is closing is not seen by the closer, but its own step 1 then finds
no open digest (PostgreSQL's insert waits for the closer's transaction) and opens the next
window. A digest that finds nothing left (its emails went out with the one before) closes
`empty`, without an email. A process that dies between the two steps leaves held emails with
no open digest: the sweep (`sweep`, in every worker) opens one for them.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.models import User
from herald.core.config import Settings
from herald.core.db import table, transaction, utcnow
from herald.delivery.queues import DIGESTS_QUEUE, KEEP_COMPLETED, KEEP_FAILED, Queues
from herald.digests.models import OPEN_ONLY, Digest, DigestStatus
from herald.digests.render import Item, render_digest
from herald.digests.rules import Rule, RuleCache
from herald.digests.schedule import group_key, next_daily, parse_daily_at, zone
from herald.notifications import unsubscribe
from herald.notifications.models import EmailNotification, Status
from herald.notifications.service import new_email
from herald.notifications.unsubscribe import Signer
from herald.templates.builtin import GENERIC

if TYPE_CHECKING:
    from herald.delivery.dispatch import Dispatcher
    from herald.templates.store import TemplateStore

log = logging.getLogger(__name__)
DIGEST_TYPE = "digest"
Key = tuple[int, str, str]  # user id, type, group key
SWEEP_BATCH = 200


def close_job_id(digest_id: int) -> str:
    return f"digest-{digest_id}"


class Digests:
    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        queues: Queues,
        dispatcher: Dispatcher,
        templates: TemplateStore,
        unsubscribe: Signer,
    ) -> None:
        self.settings = settings
        self.db = db
        self.queues = queues
        self.dispatcher = dispatcher
        self.templates = templates
        self.unsubscribe = unsubscribe
        self.rules = RuleCache(db, settings.digest_rules_cache)

    # --- the trigger's side ------------------------------------------------------------------
    def held_email(
        self,
        rule: Rule,
        kind: str,
        *,
        to: str,
        username: str | None,
        user_id: int,
        title: str,
        message: str,
        data: dict[str, Any],
        telemetry_id: str | None,
    ) -> EmailNotification:
        """An email of a digested type, held for its digest. It keeps the item as the digest
        lists it: `subject` is the title, `text` the message."""
        return EmailNotification(
            type=kind,
            user_id=user_id,
            recipient_email=to,
            recipient_username=username,
            subject=title,
            text=message,
            html=f"<p>{html.escape(message)}</p>",
            status=Status.HELD,
            queue_name=None,
            attempts=0,
            max_attempts=0,
            telemetry_id=telemetry_id,
            digest_key=group_key(rule.group_by, data),
        )

    async def opened(self, held: Sequence[EmailNotification]) -> None:
        """After `held` were committed: an open digest waits for each of their keys. A failure
        is left to the sweep, which finds held emails without an open digest."""
        keys = {(n.user_id, n.type, n.digest_key or "") for n in held if n.user_id is not None}
        try:
            opened = await self._open(sorted(keys))
            # As long as an email's enqueue may take (Redis away: the sweep closes it).
            async with asyncio.timeout(self.settings.enqueue_timeout):
                await self._schedule(opened)
        except Exception as exc:
            log.warning("digests.open_deferred", extra={"keys": len(keys), "error": repr(exc)})

    async def _open(self, keys: list[Key]) -> list[tuple[int, datetime]]:
        """Open a digest for each key that has none open; the new ones' ids and closing times.
        Sorted keys: two triggers' inserts wait on each other in one order, never deadlock."""
        if not keys:
            return []
        now = utcnow()
        closes = await self._closing_times(keys, now)
        values = [
            {
                "user_id": u,
                "type": t,
                "group_key": g,
                "status": DigestStatus.OPEN,
                "closes_at": closes[(u, t, g)],
                "created_at": now,
                "updated_at": now,
            }
            for u, t, g in keys
        ]
        async with transaction(self.db) as session:
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            c = table(Digest).c
            statement = (
                dialect.insert(table(Digest))
                .values(values)
                .on_conflict_do_nothing(
                    index_elements=["user_id", "type", "group_key"],
                    # The index's own predicate, as text: a bound parameter here made
                    # PostgreSQL fail to match the partial index whenever it ran the statement
                    # on a generic plan (a statement prepared and run five times or more).
                    index_where=OPEN_ONLY,
                )
                .returning(c.id, c.closes_at)
            )
            return [(row.id, row.closes_at) for row in await session.execute(statement)]

    async def _closing_times(self, keys: list[Key], now: datetime) -> dict[Key, datetime]:
        rules = {t: await self.rules.get(t) for t in {t for _, t, _ in keys}}
        zones: dict[int, str | None] = {}
        if any(r is not None and r.daily_at for r in rules.values()):
            async with self.db() as session:
                rows = await session.execute(
                    select(User.id, User.timezone).where(User.id.in_({u for u, _, _ in keys}))
                )
                zones = {row.id: row.timezone for row in rows}
        out: dict[Key, datetime] = {}
        for key in keys:
            rule = rules[key[1]]
            if rule is None:  # the rule went away while these were held: send them now
                out[key] = now
            elif rule.daily_at:
                out[key] = next_daily(now, parse_daily_at(rule.daily_at), zone(zones.get(key[0])))
            else:
                out[key] = now + timedelta(seconds=rule.window_seconds or 0)
        return out

    async def _schedule(self, opened: list[tuple[int, datetime]]) -> None:
        """A delayed close job per new digest; its id is the digest's, so adding it twice is
        a no-op. A job lost with Redis is made up for by the sweep."""
        queue = self.queues.get(DIGESTS_QUEUE)
        for digest_id, closes_at in opened:
            delay = max(0, int((closes_at - utcnow()).total_seconds() * 1000))
            opts = {
                "jobId": close_job_id(digest_id),
                "delay": delay,
                "attempts": 5,
                "backoff": {"type": "exponential", "delay": 1000},
                "removeOnComplete": KEEP_COMPLETED,
                "removeOnFail": KEEP_FAILED,
            }
            await queue.add("digest.close", {"digestId": digest_id}, opts)

    # --- closing -----------------------------------------------------------------------------
    async def close(self, digest_id: int) -> str:
        """Close the digest if it is still open: `sent` (its email created and queued),
        `empty`, or `closed` when someone else closed it first."""
        async with transaction(self.db) as session:
            outcome, email = await self._close(session, digest_id)
        if email is not None:
            await self.dispatcher.dispatch([email], by="digest")
        if outcome != "closed":
            log.info("digests.closed", extra={"digestId": digest_id, "outcome": outcome})
        return outcome

    async def _close(
        self, session: AsyncSession, digest_id: int
    ) -> tuple[str, EmailNotification | None]:
        now = utcnow()
        d = table(Digest).c
        claimed = (
            await session.execute(
                update(table(Digest))
                .where(d.id == digest_id, d.status == DigestStatus.OPEN)
                .values(status=DigestStatus.SENT, closed_at=now, updated_at=now)
                .returning(d.user_id, d.type, d.group_key)
            )
        ).one_or_none()
        if claimed is None:
            return "closed", None
        e = table(EmailNotification).c
        items = (
            await session.execute(
                update(table(EmailNotification))
                .where(
                    e.user_id == claimed.user_id,
                    e.type == claimed.type,
                    e.digest_key == claimed.group_key,
                    e.status == Status.HELD,
                )
                .values(status=Status.DIGESTED, digest_id=digest_id, updated_at=now)
                .returning(e.id, e.subject, e.text, e.recipient_email, e.recipient_username)
            )
        ).all()
        if not items:
            await session.execute(
                update(table(Digest)).where(d.id == digest_id).values(status=DigestStatus.EMPTY)
            )
            return "empty", None
        items = sorted(items, key=lambda row: row.id)
        email = self._digest_email(claimed.user_id, claimed.type, items)
        session.add(email)
        await session.flush()
        await session.execute(
            update(table(Digest)).where(d.id == digest_id).values(email_id=email.id)
        )
        return "sent", email

    def _digest_email(self, user_id: int, kind: str, items: Sequence[Any]) -> EmailNotification:
        """The one email a digest sends: to the address of its newest item (the one the
        application asked for last), through the email ladder as any email."""
        last = items[-1]
        username = last.recipient_username or last.recipient_email
        email = new_email(
            self.settings,
            DIGEST_TYPE,
            to=last.recipient_email,
            username=username,
            user_id=user_id,
            context={"title": kind, "message": ""},
            telemetry_id=None,
            templates=self.templates,
            template=GENERIC,
        )
        subject, text, body = render_digest(
            kind, username, [Item(row.subject, row.text) for row in items]
        )
        # Its unsubscribe link covers the type it carries (a digested type is never critical).
        token = self.unsubscribe.token(kind, None, None, user_id)
        email.unsubscribe_token = token
        email.subject = subject
        email.text, email.html = unsubscribe.with_footer(
            text, body, unsubscribe.url(self.settings, token)
        )
        return email

    # --- the safety net ----------------------------------------------------------------------
    async def sweep(self) -> int:
        """Close digests whose close job is overdue (lost with Redis, or no worker ran it), and
        open digests for held emails that have none (their process died before opening one).
        Runs in every worker; `close` makes a race between them harmless. How many it did."""
        cutoff = utcnow() - timedelta(seconds=self.settings.reconcile_grace)
        async with self.db() as session:
            overdue = list(
                await session.scalars(
                    select(Digest.id)
                    .where(Digest.status == DigestStatus.OPEN, Digest.closes_at < cutoff)
                    .order_by(Digest.closes_at)
                    .limit(SWEEP_BATCH)
                )
            )
            orphans = await self._orphans(session, cutoff)
        for digest_id in overdue:
            if await self.close(digest_id) != "closed":
                log.warning("digests.closed_by_sweep", extra={"digestId": digest_id})
        if orphans:
            log.warning("digests.orphans_found", extra={"keys": len(orphans)})
            await self._schedule(await self._open(orphans))
        return len(overdue) + len(orphans)

    @staticmethod
    async def _orphans(session: AsyncSession, cutoff: datetime) -> list[Key]:
        e = EmailNotification
        open_one = exists().where(
            and_(
                Digest.user_id == e.user_id,
                Digest.type == e.type,
                Digest.group_key == e.digest_key,
                Digest.status == DigestStatus.OPEN,
            )
        )
        rows = await session.execute(
            select(e.user_id, e.type, e.digest_key)
            .where(e.status == Status.HELD, e.created_at < cutoff, ~open_one)
            .distinct()
            .limit(SWEEP_BATCH)
        )
        return sorted((u, t, g or "") for u, t, g in rows if u is not None)
