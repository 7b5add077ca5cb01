"""herald.channels.email: how a failed SMTP conversation is classified (permanent or not), which
addresses are never tried, the headers a message gets, and when credentials need TLS."""

from __future__ import annotations

from typing import Any

import aiosmtplib
import pytest

from herald.channels.email import EmailSender, _unsendable
from herald.core.config import load_settings
from herald.delivery.errors import DeliveryError, PermanentDeliveryError
from herald.notifications.models import EmailNotification


def sender(port: int = 587, *, capture: bool = False, **settings: Any) -> EmailSender:
    fields: dict[str, Any] = {
        "email_from": "Herald <no-reply@example.com>",
        "email_security": "auto",
        "email_user": None,
        "email_password": None,
        "public_url": None,
        "unsubscribe_mailto": None,
        **settings,
    }
    return EmailSender(
        load_settings(_env_file=None, **fields), "smtp.example.com", port, capture=capture
    )


def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, "refused", "ada@example.com") for code in codes]
    )


# --- Classification ---------------------------------------------------------------------------
def test_a_5xx_reply_is_permanent() -> None:
    for code in (500, 550, 554):
        error = sender().failure(aiosmtplib.SMTPDataError(code, "5.7.1 rejected"))
        assert isinstance(error, PermanentDeliveryError), code
        assert str(error) == f"SMTP {code} 5.7.1 rejected"


def test_a_4xx_reply_may_pass() -> None:
    for code in (421, 451, 499):
        error = sender().failure(aiosmtplib.SMTPResponseException(code, "4.3.0 try later"))
        assert type(error) is DeliveryError, code
        assert str(error) == f"SMTP {code} 4.3.0 try later"


def test_a_recipient_refused_with_5xx_is_permanent_and_says_so() -> None:
    error = sender().failure(refused(550))
    assert isinstance(error, PermanentDeliveryError)
    assert str(error) == "recipient refused: 550 refused"


def test_a_recipient_refused_with_4xx_may_pass() -> None:
    assert type(sender().failure(refused(450))) is DeliveryError


def test_one_transient_refusal_among_permanent_ones_makes_the_attempt_retryable() -> None:
    assert type(sender().failure(refused(550, 451))) is DeliveryError


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        aiosmtplib.SMTPServerDisconnected("gone"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_unreachable_server_may_pass(exc: OSError) -> None:
    error = sender().failure(exc)
    assert type(error) is DeliveryError
    assert str(error).startswith(f"SMTP unreachable: {type(exc).__name__}")


def test_no_starttls_with_credentials_says_why_the_password_was_not_sent() -> None:
    no_tls = aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server.")
    error = sender(email_user="ada", email_password="pw").failure(no_tls)
    assert type(error) is DeliveryError
    assert "offers no STARTTLS" in str(error) and "HERALD_EMAIL_SECURITY" in str(error)
    # Without credentials nothing was withheld: it is just an unreachable server.
    assert str(sender().failure(no_tls)).startswith("SMTP unreachable")


# --- Addresses no attempt can send to -----------------------------------------------------------
def test_a_plain_address_is_sendable() -> None:
    assert _unsendable("ada@example.com") is None


def test_a_malformed_address_is_unsendable() -> None:
    for address in ("ada", "ada@@example.com", "a b@example.com", "ada@example..com"):
        assert (_unsendable(address) or "").startswith("malformed address:"), address


def test_an_internationalized_address_is_unsendable() -> None:
    assert _unsendable("jörg@example.com") == (
        "internationalized address: the email channel sends to ASCII addresses only"
    )


async def test_deliver_refuses_an_unsendable_address_permanently_before_any_smtp() -> None:
    n = EmailNotification(id=1, type="promo", recipient_email="not-an-address")
    with pytest.raises(PermanentDeliveryError, match="malformed address"):
        # Port 1 has no server: had a connection been tried, this would be "SMTP unreachable".
        await sender(port=1).deliver(n)


# --- Headers ------------------------------------------------------------------------------------
def email(**fields: Any) -> EmailNotification:
    base: dict[str, Any] = {
        "id": 42,
        "type": "promo",
        "recipient_email": "ada@example.com",
        "recipient_username": "ada",
        "subject": "Hello",
        "text": "t",
        "html": "h",
        "unsubscribe_token": None,
    }
    return EmailNotification(**{**base, **fields})


def test_a_subject_cannot_inject_headers() -> None:
    headers = sender().headers(email(subject="Hi\r\nBcc: eve@example.com", type="promo\nX-A: 1"))
    names = [name for name, _ in headers]
    assert "Bcc" not in names and "X-A" not in names
    assert dict(headers)["Subject"] == "Hi Bcc: eve@example.com"
    assert dict(headers)["X-Herald-Type"] == "promo X-A: 1"


def test_the_message_id_is_stable_across_attempts_and_uses_the_senders_domain() -> None:
    s = sender()
    assert s.message_id(email()) == "<herald.email.42@example.com>"
    assert dict(s.headers(email()))["Message-ID"] == s.message_id(email())


def test_only_an_email_with_an_unsubscribe_token_gets_the_one_click_headers() -> None:
    with_link = dict(sender(public_url="https://h.example").headers(email(unsubscribe_token="t")))
    assert with_link["List-Unsubscribe"] == "<https://h.example/unsubscribe/t>"
    assert with_link["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "List-Unsubscribe" not in dict(sender().headers(email()))  # a critical type's


# --- TLS and credentials --------------------------------------------------------------------------
def test_credentials_on_auto_require_starttls_except_on_465_and_for_the_capture_mailbox() -> None:
    creds: dict[str, Any] = {"email_user": "ada", "email_password": "pw"}
    assert sender(587, **creds).requires_starttls
    assert not sender(465, **creds).requires_starttls  # implicit TLS instead
    assert not sender(587, capture=True, **creds).requires_starttls
    assert not sender(587, email_security="none", **creds).requires_starttls
    assert not sender(587).requires_starttls  # no credentials to protect


@pytest.mark.parametrize(
    ("port", "security", "tls"),
    [
        (465, "auto", {"use_tls": True}),
        (587, "auto", {"start_tls": True}),
        (587, "tls", {"use_tls": True}),
        (465, "starttls", {"start_tls": True}),
        (587, "none", {"use_tls": False, "start_tls": False}),
    ],
)
def test_the_connection_with_credentials_uses_the_tls_the_settings_ask(
    port: int, security: str, tls: dict[str, bool]
) -> None:
    s = sender(port, email_user="ada", email_password="pw", email_security=security)
    options = s._connection()
    assert {k: options[k] for k in ("use_tls", "start_tls") if k in options} == tls
    assert (options["username"], options["password"]) == ("ada", "pw")


def test_the_capture_mailbox_gets_neither_tls_nor_credentials() -> None:
    options = sender(2525, capture=True, email_user="ada", email_password="pw")._connection()
    assert options["use_tls"] is False and options["start_tls"] is False
    assert "username" not in options and "password" not in options
