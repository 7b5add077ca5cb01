"""Notifications the recipient's preferences turned off: kept as `skipped`, never queued.

A skip is never a silent drop: the row is written with the trigger's others (status
`skipped`, the switch that decided in `failure_reason`), gets an audit row in the delivery
trail, a `database` stage in its telemetry timeline, and counts in
`herald_notifications_skipped_total{channel,reason}`, and a `notification.skipped` webhook
event for the endpoints that want one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from herald.notifications.models import DeliveryAttempt, DeliveryState, Status
from herald.preferences.rules import Blocked, address_blocked, blocked
from herald.preferences.service import switches_of
from herald.webhooks.events import publish_skipped

if TYPE_CHECKING:
    from herald.core.group_commit import GroupCommit
    from herald.delivery.dispatch import Dispatcher
    from herald.telemetry.service import Telemetry
    from herald.webhooks.events import WebhookEvents

__all__ = ["Blocked", "Outbox", "address_blocked", "blocked", "is_skipped", "mark", "screen"]
# The audit row's queue: it never reached one; preferences decided.
AUDIT_QUEUE = "preferences"


def mark(n: DeliveryState, why: Blocked) -> None:
    n.status = Status.SKIPPED
    n.queue_name = None
    n.failure_reason = why.reason


def is_skipped(n: DeliveryState) -> bool:
    return n.status == Status.SKIPPED


async def screen(
    session: AsyncSession, user_id: int, kind: str, notifications: Sequence[DeliveryState]
) -> list[tuple[DeliveryState, Blocked]]:
    """For a domain flow (a purchase), inside its transaction and before its rows are written:
    mark the ones the user's switches turn off. One query; the caller has checked that `kind`
    is not critical, and after its commit records the skips and dispatches the rest."""
    switches = await switches_of(session, user_id)
    skipped = []
    for n in notifications:
        why = blocked(switches, kind, n.channel.value)
        if why is not None:
            mark(n, why)
            skipped.append((n, why))
    return skipped


@dataclass(eq=False)
class Outbox:
    """Where a flow's notifications go after its commit: the skipped ones are recorded (audit
    rows, metrics, timeline, `notification.skipped` events), the rest queued."""

    dispatcher: Dispatcher
    group_commit: GroupCommit
    telemetry: Telemetry
    webhooks: WebhookEvents

    async def send(
        self,
        notifications: Sequence[DeliveryState],
        skipped: Sequence[tuple[DeliveryState, Blocked]] = (),
    ) -> None:
        if skipped:
            await self.record_skips(skipped)
        await self.dispatcher.dispatch([n for n in notifications if not is_skipped(n)])

    async def record_skips(self, skipped: Sequence[tuple[DeliveryState, Blocked]]) -> None:
        """The committed skipped rows' audit rows, metrics, telemetry and webhook events. The
        audit rows go in a group commit of their own: they need the rows' ids, which the first
        one assigned."""
        await self.group_commit.insert(
            [
                DeliveryAttempt.of(n, Status.SKIPPED, AUDIT_QUEUE, error=why.reason)
                for n, why in skipped
            ]
        )
        metrics = self.telemetry.metrics
        for n, why in skipped:
            metrics.observe_skipped(n.channel.value, why.switch)
            self.telemetry.stages.notification(
                n, "database", status=Status.SKIPPED, reason=why.reason
            )
        await publish_skipped(self.webhooks, [(n, why.reason) for n, why in skipped])
