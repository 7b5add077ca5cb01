"""The in-app channel: an emit to the recipient's sockets, from any process, and its ack.

It emits through Redis in python-socketio's pub/sub format, so a worker with no sockets of its
own reaches the user on whichever API server they are connected to: `Presence.deliver` picks
the user's sockets and publishes the emit to each, in one round trip. The attempt succeeds when
a client acknowledges the notification: an emit alone may have been dropped on the way.
"""

from __future__ import annotations

import socketio

from herald.delivery.bullmq_clients import release_slot
from herald.delivery.errors import DeliveryError
from herald.delivery.senders import DeliveryResult
from herald.inbox.acks import AckListener
from herald.notifications.models import Channel, DeliveryState, InAppNotification, Status
from herald.notifications.schemas import inapp_event
from herald.realtime.adapter.manager import socket_emit
from herald.realtime.presence import Presence

NOT_ACKNOWLEDGED = "not acknowledged"


class InAppSender:
    channel: Channel = Channel.INAPP
    model: type[DeliveryState] = InAppNotification
    in_flight_status: str = Status.QUEUED

    def __init__(
        self,
        emitter: socketio.AsyncRedisManager,
        presence: Presence,
        acks: AckListener,
        ack_timeout: float,
    ):
        self.emitter = emitter
        self.presence = presence
        self.acks = acks
        self.ack_timeout = ack_timeout

    async def deliver(self, notification: DeliveryState) -> DeliveryResult:
        assert isinstance(notification, InAppNotification)
        # Emit to each socket only if that connection has not had the notification yet (catch-up
        # may have sent it first; its ack counts all the same), unless the last attempt went
        # unacknowledged: its emit was most likely lost on the way, so send it again (a client
        # that merely acked late drops the repeat by its id).
        resend = (notification.failure_reason or "").startswith(NOT_ACKNOWLEDGED)
        event = inapp_event(notification)
        self.acks.expect(notification.id)  # before the emit: a fast ack must not be missed
        try:
            emit = socket_emit(self.emitter, "notification:new", event)
            live = await self.presence.deliver(
                notification.user_id, notification.id, emit, resend=resend
            )
            if not live:
                raise DeliveryError("recipient offline")
            release_slot()  # from here on this attempt only waits
            acked_by = await self.acks.wait(notification.id, self.ack_timeout)
        finally:
            self.acks.forget(notification.id)
        if acked_by is None:
            raise DeliveryError(f"{NOT_ACKNOWLEDGED} within {self.ack_timeout:g} s")
        # The ack's own transaction marked the row delivered before the ack reached us.
        return DeliveryResult(acked_by.transport, socket_id=acked_by.sid, recorded=True)
