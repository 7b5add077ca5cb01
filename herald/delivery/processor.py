"""One attempt of one notification, and what the ladder does with its outcome.

This is the single mechanism behind both channels: a job names a channel and a notification id;
the processor reloads the row, asks the channel's sender to deliver once, writes the attempt to
the audit trail, and either finishes, lets BullMQ retry inside the tier (by raising), or hands
the notification to the next tier or the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bullmq import Job
from sqlalchemy import BindParameter, Insert, Update, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core import driver
from herald.core.db import loaded, table, transaction, utcnow
from herald.delivery.accepted import AcceptedOutcomes
from herald.delivery.attempts import Attempt
from herald.delivery.errors import DeliveryError, PermanentDeliveryError
from herald.delivery.queues import Queues
from herald.delivery.senders import ChannelSender, DeliveryResult
from herald.notifications.ladder import Tier, ladder
from herald.notifications.models import (
    ATTEMPT_INSERT,
    FINAL_STATUSES,
    MODEL_OF,
    Channel,
    DeliveryAttempt,
    DeliveryState,
    Escalation,
    InAppNotification,
    Status,
    WebhookDelivery,
    attempt_row,
)
from herald.webhooks import events as webhook

if TYPE_CHECKING:
    from herald.telemetry.service import Telemetry
    from herald.webhooks.events import WebhookEvents

log = logging.getLogger(__name__)
# Seconds between tries to record an outcome the channel already accepted.
RECORD_RETRY_PAUSES = (0.2, 0.5, 1.0, 2.0)


class Processor:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        queues: Queues,
        senders: Mapping[Channel, ChannelSender],
        accepted: AcceptedOutcomes,
        telemetry: Telemetry | None = None,
        events: WebhookEvents | None = None,
    ) -> None:
        self.db = db
        self.queues = queues
        self.senders = senders
        self.accepted = accepted
        self.telemetry = telemetry
        self.events = events

    async def __call__(self, job: Job, token: str) -> str:
        channel = Channel(job.data["channel"])
        tier = self.queues.tier(channel, int(job.data.get("tier", 0)))
        sender = self.senders[channel]
        context = {
            "channel": channel.value,
            "notificationId": job.data["notificationId"],
            "queue": tier.queue,
            "telemetryId": job.data.get("telemetryId"),
        }
        attempt = Attempt(self.telemetry, job, channel.value, tier.queue)
        claim = await self._begin(sender, int(job.data["notificationId"]), tier)
        if claim is None:
            attempt.finished("skipped")
            return "skipped"
        notification, accepted_earlier = claim
        attempt.started(notification)
        try:
            # An earlier run's channel accepted it but recording that failed: record, never resend.
            result = accepted_earlier or await sender.deliver(notification)
        except PermanentDeliveryError as exc:
            attempt.sent(None, str(exc))
            dead_letter = after_failure(exc, self._ladder(channel), tier, job.attemptsMade)
            if not await self._failed(sender, notification, tier, str(exc), to_tier=dead_letter):
                return self._settled_meanwhile(attempt)
            log.warning("delivery.dead_lettered", extra={**context, "error": str(exc)})
            attempt.finished("dead-lettered")
            return "dead-lettered"
        except Exception as exc:  # anything else may pass: let the ladder carry on
            reason = failure_reason(exc)
            attempt.sent(None, reason)
            next_tier = after_failure(exc, self._ladder(channel), tier, job.attemptsMade)
            if not await self._failed(sender, notification, tier, reason, to_tier=next_tier):
                return self._settled_meanwhile(attempt)
            log.info(
                "delivery.attempt.failed",
                extra={**context, "error": reason, "escalatedTo": next_tier and next_tier.queue},
            )
            attempt.finished("escalated" if next_tier else "retry")
            raise  # BullMQ retries with backoff, or (tier used up) records the job as failed
        attempt.sent(result)
        await self._record_delivered(sender, notification, tier, result, context)
        if accepted_earlier:
            await self.accepted.forget(channel, notification.id)
            log.warning("delivery.recorded_late", extra=context)
        log.info("delivery.delivered", extra=context)
        attempt.finished("delivered")
        return "delivered"

    def _ladder(self, channel: Channel) -> tuple[Tier, ...]:
        return ladder(self.queues.settings, channel)

    @staticmethod
    def _settled_meanwhile(attempt: Attempt) -> str:
        # A client acknowledged it (catch-up, another socket) while this attempt waited.
        attempt.finished("delivered")
        return "delivered"

    async def _begin(
        self, sender: ChannelSender, notification_id: int, tier: Tier
    ) -> tuple[DeliveryState, DeliveryResult | None] | None:
        """Claim the row for one attempt. Returns it with what an earlier attempt's channel
        accepted but could not record, if anything (then this run only records it)."""
        fresh = await self._claim_waiting(sender, notification_id, tier)
        if fresh is not None:
            return fresh, None
        async with transaction(self.db) as session:
            n = await session.get(sender.model, notification_id, with_for_update=True)
            if n is None or n.status in FINAL_STATUSES or n.status == Status.FAILED:
                return None  # gone, already delivered, or parked in the dead-letter queue
            now = utcnow()
            if isinstance(n, InAppNotification) and n.expires_at <= now:
                n.status = Status.EXPIRED
                return None
            # Still mid-attempt after an earlier attempt: its outcome may be accepted, unrecorded.
            mid_attempt = n.status == sender.in_flight_status and n.attempts > 0
            accepted = await self.accepted.recall(sender.channel, n.id) if mid_attempt else None
            if accepted is None:
                n.status = sender.in_flight_status
                n.attempts += 1
                n.last_attempt_at = now
            n.queue_name = tier.queue
            return n, accepted

    async def _claim_waiting(
        self, sender: ChannelSender, notification_id: int, tier: Tier
    ) -> DeliveryState | None:
        """The common case in one statement: a row that waits for an attempt and is not left
        mid-attempt by an earlier one. None for anything else (gone, final, expired, or an
        earlier attempt's outcome may be pending): `_begin` then looks at the row in full."""
        model = sender.model
        statement = _claim_statement(sender.channel, sender.in_flight_status)
        params = {"nid": notification_id, "now": utcnow(), "queue": tier.queue}
        rows = await driver.fetch(self.db, statement, params)  # no BEGIN and COMMIT
        return loaded(model, rows[0]) if rows else None

    async def _record_delivered(
        self,
        sender: ChannelSender,
        n: DeliveryState,
        tier: Tier,
        result: DeliveryResult,
        context: dict[str, Any],
    ) -> None:
        """The channel took it: retry the recording, never the sending. If the database stays
        away, remember the acceptance in Redis before failing the job, so its next run (in any
        worker) records it instead of sending a second copy."""
        for pause in (*RECORD_RETRY_PAUSES, None):
            try:
                await self._delivered(sender, n, tier, result)
                return
            except Exception as exc:
                log.warning(
                    "delivery.record_failed",
                    extra={**context, "error": repr(exc), "retrying": pause is not None},
                )
                if pause is None:
                    await self.accepted.remember(sender.channel, n.id, result)
                    raise
                await asyncio.sleep(pause)

    async def _delivered(
        self, sender: ChannelSender, n: DeliveryState, tier: Tier, result: DeliveryResult
    ) -> None:
        if result.recorded:  # the ack's own statement wrote the status and the audit rows
            return
        audit = self._audit_row(n, tier, Status.DELIVERED, None, result)
        if sender.channel is Channel.EMAIL:
            fields = {"message_id": result.message_id, "smtp_response": result.response}
        elif sender.channel is Channel.WEBHOOK:
            fields = {"response": result.response}
        else:
            fields = {"socket_id": result.socket_id, "delivered_via": result.method}
        now = utcnow()
        params = {"nid": n.id, "now": now, **fields}
        delivered = webhook.of_row(
            webhook.DELIVERED, n, status=Status.DELIVERED, attempt=_attempt(n, tier)
        )
        announced: list[WebhookDelivery] = []
        # PostgreSQL, and no webhook to stage with it: one statement.
        if not await self._listened([delivered]) and driver.on_postgres(self.db):
            statement = _delivered_and_audit(n.channel, tuple(fields), tuple(audit))
            await driver.fetch(self.db, statement, {**params, **_prefixed(audit)})
        else:
            async with transaction(self.db) as session:
                await session.execute(_delivered_statement(n.channel, tuple(fields)), params)
                await session.execute(ATTEMPT_INSERT, audit)
                announced = await self._stage(session, [delivered])
        for key, value in {**fields, "status": Status.DELIVERED, "delivered_at": now}.items():
            setattr(n, key, value)
        await self._announce(announced)

    async def _failed(
        self,
        sender: ChannelSender,
        n: DeliveryState,
        tier: Tier,
        reason: str,
        *,
        to_tier: Tier | None,
    ) -> bool:
        """Record a failed attempt and hand the notification on. False (and nothing recorded)
        when it reached a final state meanwhile: a client acknowledged it while we waited."""
        now = utcnow()
        fields: dict[str, Any] = {"status": Status.QUEUED, "failure_reason": reason}
        attempt = {**_attempt(n, tier), "error": reason}
        dead = to_tier is not None and to_tier.is_dead_letter
        left = Status.FAILED if dead else Status.QUEUED  # the status the attempt leaves
        events = [webhook.of_row(webhook.FAILED, n, status=left, attempt=attempt)]
        async with transaction(self.db) as session:
            if not await self._update(session, n, {"failure_reason": reason}, unless_final=True):
                return False
            await session.execute(
                ATTEMPT_INSERT, self._audit_row(n, tier, Status.FAILED, reason, None)
            )
            if to_tier is not None:
                await self.queues.enqueue(
                    sender.channel,
                    n.id,
                    tier=to_tier.index,
                    delay_ms=to_tier.delay_ms,
                    telemetry_id=n.telemetry_id,
                )
                session.add(
                    Escalation(
                        channel=sender.channel.value,
                        notification_id=n.id,
                        from_queue=tier.queue,
                        to_queue=to_tier.queue,
                        timestamp=now,
                        reason=reason,
                        attempts=n.attempts,
                    )
                )
                fields["queue_name"] = to_tier.queue
                if to_tier.is_dead_letter:
                    fields.update(status=Status.FAILED, failed_at=now)
                    kind = webhook.DEAD_LETTERED
                else:
                    kind = webhook.ESCALATED
                moved = {"fromQueue": tier.queue, "toQueue": to_tier.queue, "error": reason}
                events.append(webhook.of_row(kind, n, status=fields["status"], **moved))
            await self._update(session, n, fields)
            announced = await self._stage(session, events)
        await self._announce(announced)
        return True

    async def _stage(
        self, session: AsyncSession, events: list[webhook.Event]
    ) -> list[WebhookDelivery]:
        """The webhook deliveries of these events, in the caller's transaction (none for a
        webhook's own attempts: its events would announce themselves without end)."""
        if self.events is None or events[0].data["channel"] == Channel.WEBHOOK.value:
            return []
        return await self.events.stage(session, events)

    async def _listened(self, events: list[webhook.Event]) -> bool:
        """Whether `_stage` would stage anything for these events (no query while the
        endpoints' cache is fresh)."""
        if self.events is None or events[0].data["channel"] == Channel.WEBHOOK.value:
            return False
        return await self.events.wanted(events)

    async def _announce(self, rows: list[WebhookDelivery]) -> None:
        if rows and self.events is not None:
            await self.events.dispatch(rows)

    @staticmethod
    async def _update(
        session: AsyncSession,
        n: DeliveryState,
        fields: dict[str, Any],
        *,
        unless_final: bool = False,
    ) -> bool:
        """One plain UPDATE statement (loading the row into the session first cost a SELECT, and
        the ORM's bulk UPDATE its bookkeeping, on every attempt); with `unless_final`, only if
        the row is not delivered or otherwise final. Returns whether the row was updated."""
        c = table(type(n)).c
        statement = update(table(type(n))).where(c.id == n.id)
        if unless_final:
            statement = statement.where(c.status.not_in(FINAL_STATUSES))
        result = await session.execute(statement.values(**fields, updated_at=utcnow()))
        if unless_final and result.rowcount == 0:  # type: ignore[attr-defined]
            return False
        for key, value in fields.items():
            setattr(n, key, value)
        return True

    @staticmethod
    def _audit_row(
        n: DeliveryState,
        tier: Tier,
        status: str,
        error: str | None,
        result: DeliveryResult | None,
    ) -> dict[str, Any]:
        """The attempt's audit row, for a plain INSERT (no ORM object, no flush)."""
        extra: dict[str, Any] = {}
        if result is not None:
            extra = dict(
                method=result.method,
                socket_id=result.socket_id,
                message_id=result.message_id,
                smtp_response=result.response,
            )
        return attempt_row(n.channel, n.id, n.attempts, status, tier.queue, error=error, **extra)


def after_failure(
    error: Exception, tiers: Sequence[Tier], tier: Tier, attempts_made: int
) -> Tier | None:
    """Where a failed attempt in `tier` hands the notification, `attempts_made` being the
    job's earlier attempts in that tier: a PermanentDeliveryError goes to the dead-letter queue
    (the ladder's last tier) at once; any other error goes to the next tier once this attempt
    used up its tier's attempts, and otherwise nowhere (None): BullMQ retries it in the tier,
    with backoff."""
    if isinstance(error, PermanentDeliveryError):
        return tiers[-1]
    if attempts_made + 1 >= tier.attempts:
        return tiers[tier.index + 1]
    return None


def failure_reason(error: Exception) -> str:
    """A failed attempt's reason for the record: a channel's own message, or what broke."""
    return str(error) if isinstance(error, DeliveryError) else f"{type(error).__name__}: {error}"


# The hot path's statements are built once: building a statement and its cache key cost about
# as much CPU as sending it (sqlalchemy Core, ~250 µs a statement on the bench machine).


@functools.cache
def _claim_statement(channel: Channel, in_flight_status: str) -> Update:
    """Claim a row waiting for an attempt (see `Processor._claim_waiting`); binds nid, now,
    queue."""
    model = MODEL_OF[channel]
    c = table(model).c
    now: BindParameter[datetime] = bindparam("now")
    statement = (
        update(table(model))
        .where(
            c.id == bindparam("nid"),
            c.status.not_in([*FINAL_STATUSES, Status.FAILED]),
            ~((c.status == in_flight_status) & (c.attempts > 0)),
        )
        .values(
            status=in_flight_status,
            attempts=c.attempts + 1,
            last_attempt_at=now,
            queue_name=bindparam("queue"),
            updated_at=now,
        )
        .returning(*c)
    )
    if model is InAppNotification:
        statement = statement.where(c.expires_at > now)
    return statement


@functools.cache
def _delivered_statement(channel: Channel, fields: tuple[str, ...]) -> Update:
    """Mark a row delivered; binds nid, now and each of `fields`."""
    model = MODEL_OF[channel]
    c = table(model).c
    now: BindParameter[datetime] = bindparam("now")
    values: dict[str, BindParameter[Any]] = {name: bindparam(name) for name in fields}
    return (
        update(table(model))
        .where(c.id == bindparam("nid"))
        .values(status=Status.DELIVERED, delivered_at=now, updated_at=now, **values)
    )


@functools.cache
def _delivered_and_audit(
    channel: Channel, fields: tuple[str, ...], audit: tuple[str, ...]
) -> Insert:
    """`_delivered_statement` and the audit row as one PostgreSQL statement (a data-modifying
    WITH runs whether or not the INSERT reads it); the row's values bind as `a_<column>`."""
    marked = _delivered_statement(channel, fields).cte("marked")
    row: dict[str, BindParameter[Any]] = {column: bindparam(f"a_{column}") for column in audit}
    return insert(table(DeliveryAttempt)).values(row).add_cte(marked)


def _prefixed(audit: dict[str, Any]) -> dict[str, Any]:
    return {f"a_{column}": value for column, value in audit.items()}


def _attempt(n: DeliveryState, tier: Tier) -> dict[str, Any]:
    """Which attempt an event is about: its number (over every tier), tier and queue."""
    return {"number": n.attempts, "tier": tier.index, "queue": tier.queue}
