"""What reaches an SMTP server: no password without TLS unless the operator said so, and no
header a caller wrote into a title."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.charset import QP, Charset
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from aiosmtplib.email import flatten_message
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import select, update

from herald.channels.email import EmailSender
from herald.channels.mime import compose
from herald.core.config import load_settings
from herald.core.db import transaction, utcnow
from herald.notifications.models import EmailNotification
from herald.notifications.service import new_email
from tests.fixtures.herald import RunningHerald
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

# Characters of the unsubscribe tokens Herald makes (URL-safe base64 and a dot).
_TOKEN = st.characters(categories=["L", "N"], max_codepoint=127) | st.sampled_from("-_.")
# Text made of pieces where writing a message has edge cases (line endings, mbox's "From ",
# SMTP's dots, non-ASCII, runs of spaces, words long enough to fold), and of anything at all.
_PIECES = st.sampled_from(
    ["From ", "\n", "\r", "\r\n", ".", " ", "  ", "\t", "=", "?", "ü", "你", "x" * 40, "word "]
)
_BOUNDARY = st.characters(categories=["L", "N"], max_codepoint=127) | st.sampled_from("=_")
_TEXT = st.lists(_PIECES | st.text(max_size=12), max_size=40).map("".join)
INJECTED = "Your invoice\r\nReply-To : billing@attacker.example"


class PlainSmtpWithAuth:
    """A real SMTP server that offers AUTH but no STARTTLS (what a server without TLS, or an
    attacker who strips the offer, looks like), and records every AUTH attempt."""

    def __init__(self) -> None:
        self.auth_attempts: list[tuple[str, Any]] = []
        self.messages: list[Envelope] = []
        self.port = 0

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.auth_attempts.append((mechanism, data))
        return AuthResult(success=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 2.0.0 accepted"


@pytest.fixture
async def plain_smtp() -> AsyncIterator[PlainSmtpWithAuth]:
    sink = PlainSmtpWithAuth()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(sink, authenticator=sink, auth_require_tls=False), "127.0.0.1", 0
    )
    sink.port = server.sockets[0].getsockname()[1]
    yield sink
    server.close()


def credentials(server: PlainSmtpWithAuth, **more: Any) -> dict[str, Any]:
    return {
        "email_host": "127.0.0.1",
        "email_port": server.port,
        "email_user": "mailer",
        "email_password": "smtp-secret-password",
        **more,
    }


async def welcome_row(herald: RunningHerald, user_id: int) -> EmailNotification | None:
    async with herald.herald.db() as session:
        return await session.scalar(
            select(EmailNotification).where(EmailNotification.user_id == user_id)
        )


class TestSmtpCredentialsNeedTls:
    async def test_auto_refuses_to_authenticate_without_starttls(
        self, herald_factory: Any, plain_smtp: PlainSmtpWithAuth
    ) -> None:
        herald = await herald_factory(**credentials(plain_smtp))
        user = await herald.signup()

        async def failed_once() -> str | None:
            row = await welcome_row(herald, user["userId"])
            return row.failure_reason if row else None

        reason = await eventually(failed_once)
        assert "HERALD_EMAIL_SECURITY" in reason and "STARTTLS" in reason
        assert plain_smtp.auth_attempts == [] and plain_smtp.messages == []
        await discard_unsendable(herald, user["userId"])


async def discard_unsendable(herald: RunningHerald, user_id: int) -> None:
    """What an operator would do with it. Left queued, a later test's reconciler (PostgreSQL is
    shared between tests) would deliver it to that test's SMTP server."""
    async with transaction(herald.herald.db) as session:
        await session.execute(
            update(EmailNotification)
            .where(EmailNotification.user_id == user_id)
            .values(status="failed", discarded_at=utcnow(), discard_reason="test over")
        )

    async def test_none_chosen_explicitly_allows_cleartext(
        self, herald_factory: Any, plain_smtp: PlainSmtpWithAuth
    ) -> None:
        herald = await herald_factory(**credentials(plain_smtp, email_security="none"))
        user = await herald.signup()
        await eventually(lambda: _value(plain_smtp.messages))
        assert plain_smtp.auth_attempts and plain_smtp.messages[0].rcpt_tos == [user["email"]]


async def _value(value: Any) -> Any:
    return value


class TestNoHeaderInjection:
    async def test_control_characters_in_a_title_are_422_naming_it(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.member()
        for title in (INJECTED, "Line\nbreak", "Tab\there", "Sep\u2028arator"):
            answer = await herald.http.post(
                "/api/notifications",
                headers=herald.admin(),
                json={
                    "recipients": [{"userId": user["userId"]}],
                    "type": "invoice",
                    "title": title,
                    "message": "Pay up",
                    "channels": ["email"],
                },
            )
            assert answer.status_code == 422, title
            error = answer.json()["error"]
            assert [d["field"] for d in error["details"]] == ["title"]
        broadcast = await herald.http.post(
            "/api/ops/broadcast", headers=herald.admin(), json={"title": INJECTED, "message": "x"}
        )
        assert broadcast.status_code == 422

    async def test_a_stored_subject_with_crlf_still_sends_one_header(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        """Rows made before the check (or by code that skips it) are made safe when sent."""
        email = new_email(
            herald.settings,
            "invoice",
            to="payer@example.com",
            username="payer",
            user_id=None,
            context={"title": INJECTED, "message": "Pay up"},
            telemetry_id=None,
            templates=herald.herald.templates,
            template="generic",
        )
        async with transaction(herald.herald.db) as session:
            session.add(email)
        await herald.herald.dispatcher.dispatch([email])
        [sent] = await smtp.wait_for("payer@example.com")
        message = message_from_bytes(sent.original_content or b"", policy=policy.default)
        assert "Reply-To" not in message and "billing@attacker.example" in message["Subject"]


UTF8_QP = Charset("utf-8")
UTF8_QP.body_encoding = QP
BOUNDARY = "=_herald_0123456789abcdef0123456789abcdef"


def reference(headers: list[tuple[str, str]], parts: list[tuple[str, str]], boundary: str) -> bytes:
    """The same message built with the stdlib's classic MIME classes and flattened by aiosmtplib,
    as Herald sent it before it wrote the bytes itself (herald/channels/mime.py)."""
    msg = MIMEMultipart("alternative", boundary=boundary)
    for name, value in headers:
        msg[name] = value
    for subtype, body in parts:
        ascii_lines = body.isascii() and all(len(line) <= 998 for line in body.splitlines())
        msg.attach(MIMEText(body, subtype, "us-ascii" if ascii_lines else UTF8_QP))  # type: ignore[arg-type]
    return flatten_message(msg)


class TestComposing:
    """Herald writes its messages' bytes itself; what goes into DATA must be byte for byte what
    the stdlib's MIME classes, flattened by aiosmtplib, make of the same headers and bodies."""

    SUBJECTS = [
        "Welcome",
        "x" * 69,  # "Subject: " and 69 characters: exactly 78, the longest unfolded line
        "x" * 70,
        "x" * 60 + " " + "y" * 9,  # 79 characters with a space: folded there
        "A subject long enough that Compat32 has to fold it onto a second line, at a space",
        "  spaces   inside  and around  ",
        "Grüße aus Köln — 你好",
        "=?utf-8?q?looks_encoded?= but is plain text",
        "tab\tand a control\x07 character",
    ]

    def sender(self, **settings: Any) -> EmailSender:
        return EmailSender(load_settings(**settings), "127.0.0.1", 25)

    def message(self, subject: str, **fields: Any) -> EmailNotification:
        values: dict[str, Any] = {
            "id": 7,
            "type": "generic",
            "recipient_email": "ana@example.com",
            "recipient_username": "ana",
            "subject": subject,
            "text": "Hello\nthere",
            "html": "<p>Hello</p>",
            "unsubscribe_token": None,
        }
        return EmailNotification(**{**values, **fields})

    def assert_as_the_mime_classes(
        self, sender: EmailSender, n: EmailNotification, boundary: str = BOUNDARY
    ) -> None:
        headers = sender.headers(n)
        parts = [("plain", n.text), ("html", n.html)]
        assert compose(headers, parts, boundary) == reference(headers, parts, boundary)

    @pytest.mark.parametrize("subject", SUBJECTS)
    def test_every_subject_is_written_as_the_mime_classes_would(self, subject: str) -> None:
        self.assert_as_the_mime_classes(self.sender(), self.message(subject))

    @pytest.mark.parametrize(
        "fields",
        [
            {"recipient_username": "Zoë Ünal", "recipient_email": "zoe@example.com"},
            {"recipient_username": None},
            {"unsubscribe_token": "t" * 43},
            {"text": "ünïcode body " * 40, "html": "<p>" + "long line " * 200 + "</p>"},
            {"text": "From the start of a line\n.\n..", "type": "weekly digest"},
            {"text": "", "html": "crlf\r\nlone cr\rFrom after a CR\n\nFrom after LF"},
        ],
    )
    def test_every_kind_of_message_is_written_as_the_mime_classes_would(
        self, fields: dict[str, Any]
    ) -> None:
        for from_ in ("Herald <noreply@herald.example>", "Hérald Bötschaft <n@herald.example>"):
            sender = self.sender(email_from=from_)
            self.assert_as_the_mime_classes(sender, self.message("Hi", **fields))

    @examples(max_examples=300, deadline=None)
    @given(
        subject=_TEXT,
        name=st.none() | _TEXT,
        kind=_TEXT.filter(bool),
        text=_TEXT,
        html=_TEXT,
        token=st.none() | st.text(_TOKEN, min_size=1, max_size=50),
        boundary=st.text(_BOUNDARY, min_size=1, max_size=70),
    )
    def test_any_message_is_written_as_the_mime_classes_would(
        self,
        subject: str,
        name: str | None,
        kind: str,
        text: str,
        html: str,
        token: str | None,
        boundary: str,
    ) -> None:
        n = self.message(
            subject,
            recipient_username=name,
            type=kind,
            text=text,
            html=html,
            unsubscribe_token=token,
        )
        self.assert_as_the_mime_classes(self.sender(), n, boundary)

    def test_a_boundary_it_cannot_write_is_refused(self) -> None:
        with pytest.raises(ValueError, match="boundary"):
            compose([], [("plain", "x")], 'has space"')

    def test_the_sent_message_has_a_fresh_boundary_and_parses_back(self) -> None:
        n = self.message("Grüße", text="Hello ünïcode", unsubscribe_token="tok")
        first, second = self.sender().message(n), self.sender().message(n)
        assert first != second  # the boundary is drawn per message
        parsed = message_from_bytes(first, policy=policy.default)
        assert (
            parsed["Subject"] == "Grüße" and parsed["Message-ID"] == "<herald.email.7@herald.local>"
        )
        assert parsed.get_body(("plain",)).get_content() == "Hello ünïcode"  # type: ignore[union-attr]
        assert "List-Unsubscribe-Post" in parsed

    def test_a_header_that_fits_is_not_folded_and_one_that_does_not_is(self) -> None:
        assert b"Subject: " + b"x" * 69 + b"\n" in self.sender().message(self.message("x" * 69))
        longer = self.sender().message(self.message("word " * 20))
        assert b"Subject: word word" in longer and b"\n word" in longer
