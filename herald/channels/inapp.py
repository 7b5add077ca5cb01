"""The in-app channel: an emit to the recipient's Socket.IO room, from any process.

It emits through a write-only Redis manager, so a worker with no sockets of its own reaches the
user on whichever API server they are connected to.
"""

from __future__ import annotations

import socketio

from herald.channels.base import DeliveryResult
from herald.delivery.errors import DeliveryError
from herald.notifications.models import Channel, DeliveryState, InAppNotification, Status
from herald.notifications.schemas import inapp_event
from herald.realtime.presence import Presence


class InAppSender:
    channel: Channel = Channel.INAPP
    model: type[DeliveryState] = InAppNotification
    in_flight_status: str = Status.QUEUED

    def __init__(self, emitter: socketio.AsyncRedisManager, presence: Presence):
        self.emitter = emitter
        self.presence = presence

    async def deliver(self, notification: DeliveryState) -> DeliveryResult:
        assert isinstance(notification, InAppNotification)
        sockets = await self.presence.sockets(notification.user_id)
        if not sockets:
            raise DeliveryError("recipient offline")
        event = inapp_event(notification)
        # One emit per socket, each only if that connection has not had this notification yet
        # (catch-up may have sent it first): a client never sees an id twice on one connection.
        for sid in sockets:
            if await self.presence.first_sight(sid, notification.id):
                await self.emitter.emit("notification:new", event, to=sid, namespace="/")
        return DeliveryResult("websocket", socket_id=sockets[0])
