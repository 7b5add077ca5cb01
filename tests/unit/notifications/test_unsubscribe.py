"""herald.notifications.unsubscribe: one-click unsubscribe links (signed tokens), their headers
and the footer."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from herald.core.config import load_settings
from herald.notifications.unsubscribe import (
    AUDIENCE,
    Grant,
    LinkRefused,
    Signer,
    headers,
    secret,
    with_footer,
)

KEY = "k" * 40
signer = Signer(KEY)


def signed(**claims: Any) -> str:
    return jwt.encode(claims, KEY, algorithm="HS256")


def test_a_link_for_a_subscriber_grants_that_subscriber_and_type() -> None:
    grant = signer.verify(signer.token("promo", "sub-1", "ada@example.com", user_id=7))
    assert grant == Grant("promo", subscriber_id="sub-1")  # the subscriber id wins
    assert grant.recipient == "sub-1"


def test_a_link_for_a_user_without_subscriber_id() -> None:
    grant = signer.verify(signer.token("promo", None, "ada@example.com", user_id=7))
    assert grant == Grant("promo", user_id=7)
    assert grant.recipient == "your account"


def test_a_link_for_a_plain_address_keeps_it_in_lower_case() -> None:
    grant = signer.verify(signer.token("promo", None, "Ada@Example.COM"))
    assert grant == Grant("promo", email="ada@example.com")
    assert grant.recipient == "ada@example.com"


def test_a_tampered_link_is_refused() -> None:
    header, payload, signature = signer.token("promo", "sub-1", None).split(".")
    assert signer.verify(f"{header}.{payload}.{signature}").subscriber_id == "sub-1"
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(LinkRefused):
        signer.verify(f"{header}.{forged}.{signature}")


def test_a_link_cut_short_or_signed_with_another_key_is_refused() -> None:
    value = signer.token("promo", "sub-1", None)
    with pytest.raises(LinkRefused, match="cut short"):
        signer.verify(value[:-5])
    with pytest.raises(LinkRefused):
        Signer("other" * 8).verify(value)


def test_a_client_token_signed_with_the_same_key_is_no_link() -> None:
    # Same key, but no unsubscribe audience: a token made for something else never passes.
    with pytest.raises(LinkRefused):
        signer.verify(signed(sub="sub-1", exp=2**31, type="promo", ch="email"))
    with pytest.raises(LinkRefused):
        signer.verify(signed(aud="herald:other", sub="sub-1", type="promo", ch="email"))


def test_a_signed_token_of_the_wrong_shape_is_refused() -> None:
    wrong: list[dict[str, Any]] = [
        {"type": "promo", "ch": "inapp", "sub": "s"},  # not the email channel
        {"type": "promo", "sub": "s"},  # no channel
        {"type": "promo", "ch": "email"},  # nobody
        {"type": "promo", "ch": "email", "sub": "s", "email": "a@example.com"},  # two people
        {"type": "promo", "ch": "email", "uid": "7"},  # a user id that is not a number
        {"type": 5, "ch": "email", "sub": "s"},
        {"ch": "email", "sub": "s"},  # no type
    ]
    assert [claims for claims in wrong if not refused(signed(aud=AUDIENCE, **claims))] == []


def refused(token: str) -> bool:
    try:
        signer.verify(token)
    except LinkRefused:
        return True
    return False


def test_the_key_is_the_configured_secret_else_derived_from_the_admin_token() -> None:
    configured = load_settings(_env_file=None, unsubscribe_secret="u" * 32)
    assert secret(configured, "admin") == "u" * 32
    plain = load_settings(_env_file=None, unsubscribe_secret=None)
    assert secret(plain, "admin") == secret(plain, "admin") != secret(plain, "admin-2")
    assert "admin" not in secret(plain, "admin")


def test_headers_carry_the_https_link_first_and_the_mailto_when_configured() -> None:
    base: dict[str, Any] = {"_env_file": None, "public_url": "https://herald.example"}
    only_https = headers(load_settings(**base, unsubscribe_mailto=None), "tok")
    assert only_https == {
        "List-Unsubscribe": "<https://herald.example/unsubscribe/tok>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    both = headers(load_settings(**base, unsubscribe_mailto="unsub@example.com"), "tok")
    assert both["List-Unsubscribe"] == (
        "<https://herald.example/unsubscribe/tok>, "
        "<mailto:unsub@example.com?subject=unsubscribe%20tok>"
    )


def test_the_footer_goes_at_the_end_of_the_text_and_inside_the_html_body() -> None:
    link = 'https://h.example/unsubscribe/a"b&c'
    text, html = with_footer("Hello\n\n", "<html><body><p>Hi</p></body></html>", link)
    assert text == f"Hello\n\n--\nUnsubscribe from these emails: {link}\n"
    assert html.startswith("<html><body><p>Hi</p><p ")
    assert html.endswith("</p></body></html>")
    assert 'href="https://h.example/unsubscribe/a&quot;b&amp;c"' in html  # escaped
    _, bare = with_footer("t", "<p>Hi</p>", link)
    assert bare.startswith("<p>Hi</p><p ")  # no body element: appended
