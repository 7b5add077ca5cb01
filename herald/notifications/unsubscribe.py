"""One-click unsubscribe (RFC 8058): the signed token, the link, the headers and the footer.

The token is a JWT (PyJWT, HS256 pinned) signed with HERALD_UNSUBSCRIBE_SECRET, with its own
audience so neither a client token nor anything else signed for Herald passes for one. It
names whom (`sub`: a subscriber id, or `email`: a plain address with no subscriber) and what
(`type`, channel `email`): changing any of them breaks the signature, so a link works only for
the one subscriber and type it was made for. It does not expire: an unsubscribe link must
work whenever the email is read, and using it twice changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

import jwt

from herald.core.config import Settings

AUDIENCE = "herald:unsubscribe"
ALGORITHMS = ["HS256"]
POST_HEADER = "List-Unsubscribe=One-Click"


class LinkRefused(Exception):
    """A token that is not a valid unsubscribe link; the message says why."""


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: opting `subscriber_id` (or, for a plain address, `email`)
    out of `type`'s emails, and managing that recipient's email preferences."""

    type: str
    subscriber_id: str | None = None
    email: str | None = None
    user_id: int | None = None  # a signed-up user the application gave no subscriber id

    @property
    def recipient(self) -> str:
        if self.subscriber_id is not None:
            return self.subscriber_id
        return str(self.email) if self.user_id is None else "your account"


def secret(settings: Settings, admin_token: str) -> str:
    if settings.unsubscribe_secret:
        return settings.unsubscribe_secret.get_secret_value()
    # Every server of one deployment holds the same admin token, so they agree on this too.
    return hmac.new(admin_token.encode(), b"herald.unsubscribe.v1", hashlib.sha256).hexdigest()


def sign(
    key: str, kind: str, *, subscriber_id: str | None, email: str | None, user_id: int | None = None
) -> str:
    claims: dict[str, str | int] = {"aud": AUDIENCE, "type": kind, "ch": "email"}
    if subscriber_id is not None:
        claims["sub"] = subscriber_id
    elif user_id is not None:
        claims["uid"] = user_id
    else:
        assert email is not None
        claims["email"] = email
    return jwt.encode(claims, key, algorithm="HS256")


def verify(key: str, token: str) -> Grant:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=AUDIENCE,
            options={"require": ["aud", "type"]},
        )
    except jwt.InvalidTokenError:
        raise LinkRefused("this unsubscribe link is not valid (it may be cut short)") from None
    kind, subscriber, email = claims.get("type"), claims.get("sub"), claims.get("email")
    user_id = claims.get("uid")
    if (
        claims.get("ch") != "email"
        or not isinstance(kind, str)
        or [subscriber, email, user_id].count(None) != 2
        or not isinstance(user_id, int | None)
    ):
        raise LinkRefused("this unsubscribe link is not valid")
    return Grant(kind, subscriber_id=subscriber, email=email, user_id=user_id)


class Signer:
    """Makes and checks this deployment's unsubscribe tokens (herald.runtime holds one)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def token(
        self, kind: str, subscriber_id: str | None, email: str | None, user_id: int | None = None
    ) -> str:
        """For a subscriber when there is one, else for the user (a signed-up one without a
        subscriber id), else for the plain address."""
        if subscriber_id is not None:
            return sign(self._key, kind, subscriber_id=subscriber_id, email=None)
        if user_id is not None:
            return sign(self._key, kind, subscriber_id=None, email=None, user_id=user_id)
        return sign(self._key, kind, subscriber_id=None, email=(email or "").lower())

    def verify(self, token: str) -> Grant:
        return verify(self._key, token)


def url(settings: Settings, token: str) -> str:
    return f"{settings.effective_public_url}/unsubscribe/{token}"


def headers(settings: Settings, token: str) -> dict[str, str]:
    """The RFC 8058 headers: the HTTPS link first, then the mailto one when configured."""
    links = [f"<{url(settings, token)}>"]
    if settings.unsubscribe_mailto:
        subject = quote(f"unsubscribe {token}")
        links.append(f"<mailto:{settings.unsubscribe_mailto}?subject={subject}>")
    return {"List-Unsubscribe": ", ".join(links), "List-Unsubscribe-Post": POST_HEADER}


def with_footer(text: str, html: str, link: str) -> tuple[str, str]:
    """The rendered bodies with the unsubscribe link appended: whatever renders them (the
    built-in templates or stored ones), the link is added here, after rendering."""
    text = f"{text.rstrip()}\n\n--\nUnsubscribe from these emails: {link}\n"
    footer = (
        '<p style="color:#7b8794;font-size:12px">'
        f'<a href="{escape(link)}" style="color:#7b8794">Unsubscribe</a> from these emails.</p>'
    )
    at = html.rfind("</body>")
    html = html[:at] + footer + html[at:] if at >= 0 else html + footer
    return text, html
