"""What every channel gives the delivery ladder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from herald.notifications.models import Channel, DeliveryState


@dataclass(frozen=True)
class DeliveryResult:
    method: str  # "smtp", "websocket"
    socket_id: str | None = None
    message_id: str | None = None
    response: str | None = None
    # The row already says delivered, with its audit rows: a client's ack wrote them.
    recorded: bool = False


class ChannelSender(Protocol):
    channel: Channel
    model: type[DeliveryState]
    # The status a row shows while an attempt is in flight ("sending" for email; an in-app
    # attempt is a single emit, so it stays "queued").
    in_flight_status: str

    async def deliver(self, notification: DeliveryState) -> DeliveryResult:
        """Deliver once, or raise DeliveryError / PermanentDeliveryError."""
        ...
