"""The webhook channel: one signed POST of one event to one registered endpoint.

Signed as Standard Webhooks specifies (https://www.standardwebhooks.com), with its reference
Python package (`standardwebhooks`): headers `webhook-id` (the event's id: the same on every
attempt, retry and replay, for receivers to dedupe), `webhook-timestamp` (this attempt's, in
seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the
endpoint's `whsec_` secret). Each attempt is signed afresh, since receivers refuse timestamps
more than five minutes off; the body is the same bytes every time.

What the receiver's answer means:
- a 2xx: delivered;
- 410 Gone: the receiver says this endpoint is gone for good, so the delivery goes to the
  dead-letter queue at once (replayable once the receiver is back);
- any other status (a 4xx included: a receiver being deployed answers 404, one mid-rotation
  of its secret 401), a timeout (`HERALD_WEBHOOK_TIMEOUT`), a refused connection: the attempt
  failed and the ladder carries on. Redirects are not followed (a signed event goes only where
  it was registered to go): a 3xx is a failure too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from herald import __version__
from herald.core.config import Settings
from herald.delivery.errors import DeliveryError, PermanentDeliveryError
from herald.delivery.senders import DeliveryResult
from herald.notifications.models import Channel, DeliveryState, Status, WebhookDelivery
from herald.webhooks.registry import EndpointCache

GONE = 410
EXCERPT = 200  # characters of a failing receiver's answer kept in the reason


def signed_headers(secret: str, event_id: str, body: str, now: datetime) -> dict[str, str]:
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, now, body),
    }


def outcome(answer: httpx.Response) -> DeliveryResult:
    """What the receiver's answer means (see the module): delivered for a 2xx; otherwise
    raises PermanentDeliveryError for 410 Gone, DeliveryError for any other status."""
    status = f"{answer.status_code} {answer.reason_phrase}".strip()
    if answer.is_success:
        return DeliveryResult("http", response=status)
    reason = f"HTTP {status}: {answer.text[:EXCERPT]}".rstrip(": ")
    if answer.status_code == GONE:
        raise PermanentDeliveryError(reason)
    raise DeliveryError(reason)


class WebhookSender:
    channel: Channel = Channel.WEBHOOK
    model: type[DeliveryState] = WebhookDelivery
    in_flight_status: str = Status.SENDING

    def __init__(self, settings: Settings, endpoints: EndpointCache) -> None:
        self.endpoints = endpoints
        self.timeout = settings.webhook_timeout
        # One client per process: its connection pool keeps connections to receivers open.
        self.client = httpx.AsyncClient(
            timeout=settings.webhook_timeout,
            follow_redirects=False,
            headers={"user-agent": f"Herald-Webhooks/{__version__}"},
        )

    async def deliver(self, notification: DeliveryState) -> DeliveryResult:
        assert isinstance(notification, WebhookDelivery)
        n = notification
        endpoint = await self.endpoints.get(n.endpoint_id)
        if endpoint is None:
            raise PermanentDeliveryError(f"webhook endpoint {n.endpoint_id} was deleted")
        headers = signed_headers(endpoint.secret, n.event_id, n.payload, datetime.now(UTC))
        headers["content-type"] = "application/json"
        try:
            answer = await self.client.post(n.url, content=n.payload.encode(), headers=headers)
        except httpx.TimeoutException:
            raise DeliveryError(f"no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"unreachable: {type(exc).__name__}: {exc}") from None
        return outcome(answer)

    async def close(self) -> None:
        await self.client.aclose()
