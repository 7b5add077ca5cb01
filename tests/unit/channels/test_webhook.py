"""herald.channels.webhook: what a receiver's answer means for the ladder, and the signature."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from herald.channels.webhook import EXCERPT, outcome, signed_headers
from herald.delivery.errors import DeliveryError, PermanentDeliveryError
from herald.delivery.senders import DeliveryResult


def test_a_2xx_is_delivered_with_the_status_line_kept() -> None:
    assert outcome(httpx.Response(200)) == DeliveryResult("http", response="200 OK")
    assert outcome(httpx.Response(204)).response == "204 No Content"


def test_410_gone_is_permanent() -> None:
    with pytest.raises(PermanentDeliveryError, match=r"^HTTP 410 Gone: endpoint removed$"):
        outcome(httpx.Response(410, text="endpoint removed"))


def retryable(status: int) -> bool:
    try:
        outcome(httpx.Response(status, text="nope"))
    except PermanentDeliveryError:
        return False
    except DeliveryError as error:
        return str(error).startswith(f"HTTP {status} ")
    return False


def test_any_other_status_may_pass() -> None:
    # A receiver being deployed answers 404, one rotating its secret 401; redirects are not
    # followed (a signed event goes only where it was registered to go).
    statuses = (301, 302, 400, 401, 404, 409, 429, 500, 502, 503)
    assert [status for status in statuses if not retryable(status)] == []


def test_the_reason_keeps_only_an_excerpt_of_the_answer() -> None:
    with pytest.raises(DeliveryError) as raised:
        outcome(httpx.Response(500, text="x" * (EXCERPT + 50)))
    assert str(raised.value) == "HTTP 500 Internal Server Error: " + "x" * EXCERPT


def test_an_empty_answer_leaves_no_dangling_colon() -> None:
    with pytest.raises(DeliveryError, match=r"^HTTP 503 Service Unavailable$"):
        outcome(httpx.Response(503))


def test_the_signature_verifies_with_the_reference_implementation() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"type":"notification.delivered"}'
    headers = signed_headers(secret, "evt_1", body, datetime.now(UTC))
    assert headers["webhook-id"] == "evt_1"
    Webhook(secret).verify(body, headers)  # raises if it does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("delivered", "failed"), headers)
