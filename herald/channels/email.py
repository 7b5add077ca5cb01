"""The email channel: one SMTP conversation per attempt through aiosmtplib.

The same code talks to a real SMTP server (EMAIL_HOST) and to Herald's capture mailbox, which
is just an SMTP server that keeps what it receives.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from typing import Any, NamedTuple

import aiosmtplib
from email_validator import EmailNotValidError, validate_email

from herald.channels.mime import compose
from herald.channels.smtp_pool import SmtpPool
from herald.core.config import Settings
from herald.delivery.errors import DeliveryError, PermanentDeliveryError
from herald.delivery.senders import DeliveryResult
from herald.notifications import unsubscribe
from herald.notifications.ladder import ladder
from herald.notifications.models import Channel, DeliveryState, EmailNotification, Status

log = logging.getLogger(__name__)


class EmailSender:
    channel: Channel = Channel.EMAIL
    model: type[DeliveryState] = EmailNotification
    in_flight_status: str = Status.SENDING

    def __init__(self, settings: Settings, host: str, port: int, *, capture: bool = False):
        self.settings = settings
        self.host = host
        self.port = port
        self.capture = capture
        # As many open connections as this process may send messages at once.
        self.pool = SmtpPool(self._connection, size=max_parallel_sends(settings))

    @property
    def requires_starttls(self) -> bool:
        """With credentials, "auto" insists on STARTTLS: aiosmtplib would otherwise send AUTH
        in cleartext to a server that doesn't offer it (or to whoever stripped the offer).
        Only an explicit HERALD_EMAIL_SECURITY=none allows that."""
        s = self.settings
        return (
            not self.capture
            and bool(s.email_user)
            and s.email_security == "auto"
            and self.port != 465
        )

    def message_id(self, notification: EmailNotification) -> str:
        # Stable across attempts, so a receiver can drop the rare duplicate of an
        # at-least-once delivery.
        domain = _sender(self.settings.email_from).domain
        return f"<herald.email.{notification.id}@{domain}>"

    def headers(self, n: EmailNotification) -> list[tuple[str, str]]:
        """The message's own headers, in order, with non-ASCII names and subjects encoded
        (RFC 2047). Inputs are checked, but a row made otherwise may carry a control character
        in a subject or type: it becomes a space."""
        subject = _one_line(n.subject)
        headers = [
            ("From", _sender(self.settings.email_from).header),
            ("To", formataddr((n.recipient_username or "", n.recipient_email), charset="utf-8")),
            ("Subject", subject if subject.isascii() else Header(subject, "utf-8").encode()),
            ("Date", formatdate(localtime=False)),
            ("Message-ID", self.message_id(n)),
            ("X-Herald-Notification", f"email-{n.id}"),
            ("X-Herald-Type", _one_line(n.type)),
        ]
        if n.unsubscribe_token:  # RFC 8058 one-click unsubscribe; none for critical types
            headers += unsubscribe.headers(self.settings, n.unsubscribe_token).items()
        return headers

    def message(self, n: EmailNotification) -> bytes:
        """The message as it goes into DATA. A boundary of our own: a random one cannot occur
        in a body (the stdlib's generator draws one and then searches the whole body for it)."""
        boundary = f"=_herald_{secrets.token_hex(16)}"
        return compose(self.headers(n), [("plain", n.text), ("html", n.html)], boundary)

    async def deliver(self, notification: DeliveryState) -> DeliveryResult:
        assert isinstance(notification, EmailNotification)
        unsendable = _unsendable(notification.recipient_email)
        if unsendable is not None:
            raise PermanentDeliveryError(unsendable)
        message = self.message(notification)
        sender = _sender(self.settings.email_from).address
        try:
            response = await self.pool.send(sender, [notification.recipient_email], message)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise self.failure(exc) from None
        message_id = self.message_id(notification)
        return DeliveryResult("smtp", message_id=message_id, response=response)

    def failure(self, exc: TimeoutError | aiosmtplib.SMTPException | OSError) -> DeliveryError:
        """What a failed SMTP conversation means for the ladder: a 5xx reply (to the message or
        to its recipient) will not pass; a 4xx reply, a timeout, a refused or dropped connection
        may."""
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [r.code for r in exc.recipients]
            reason = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            return _by_code(min(codes), f"recipient refused: {reason}")
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return _by_code(exc.code, f"SMTP {exc.code} {exc.message}")
        if self.requires_starttls and "STARTTLS" in str(exc):  # aiosmtplib's wording
            return DeliveryError(self._no_tls_reason())
        return DeliveryError(f"SMTP unreachable: {type(exc).__name__}: {exc}")

    def _no_tls_reason(self) -> str:
        return (
            f"the SMTP server {self.host}:{self.port} offers no STARTTLS, so EMAIL_USER's "
            "password was not sent (it would go in cleartext). Use a server with TLS "
            "(HERALD_EMAIL_SECURITY=tls for port 465), or allow cleartext explicitly with "
            "HERALD_EMAIL_SECURITY=none"
        )

    def _connection(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "timeout": s.email_timeout,
        }
        if self.capture or s.email_security == "none":
            options.update(use_tls=False, start_tls=False)
        elif s.email_security == "tls" or (s.email_security == "auto" and self.port == 465):
            options["use_tls"] = True
        elif s.email_security == "starttls" or self.requires_starttls:
            options["start_tls"] = True
        # "auto" without credentials: aiosmtplib upgrades with STARTTLS when it is offered.
        if not self.capture and s.email_user:
            options["username"] = s.email_user
            options["password"] = s.email_password.get_secret_value() if s.email_password else ""
        return options


@functools.lru_cache(maxsize=4096)
def _unsendable(address: str) -> str | None:
    """Why no attempt can ever send to this address, or None. Checked at each attempt, since a
    row may come from anywhere; remembered, since the same people get most of the mail (it was
    4 % of an email worker's CPU)."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"malformed address: {exc}"
    if not address.isascii():  # valid, but it needs SMTPUTF8 and UTF-8 headers
        return "internationalized address: the email channel sends to ASCII addresses only"
    return None


class _Sender(NamedTuple):
    header: str  # the From header
    address: str  # the envelope's MAIL FROM
    domain: str  # for Message-IDs


@functools.lru_cache(maxsize=8)
def _sender(email_from: str) -> _Sender:
    """EMAIL_FROM, parsed once rather than per email."""
    name, address = parseaddr(email_from)
    domain = address.rpartition("@")[2] or "herald.local"
    return _Sender(formataddr((name, address), charset="utf-8"), address, domain)


_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def _one_line(text: str) -> str:
    """Header text with every control character (CR and LF above all) made a space."""
    return _LINE_BREAKS.sub(" ", text)


def max_parallel_sends(settings: Settings) -> int:
    """Every email tier's concurrency: what one worker process may have in flight at once."""
    return sum(t.concurrency for t in ladder(settings, Channel.EMAIL) if not t.is_dead_letter)


def _by_code(code: int, reason: str) -> DeliveryError:
    if 500 <= code < 600:
        return PermanentDeliveryError(reason)
    return DeliveryError(reason)
