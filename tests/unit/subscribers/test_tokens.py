"""herald.subscribers.tokens: which client tokens (JWTs an application signs) authenticate whom."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from herald.subscribers.tokens import LEEWAY_SECONDS, TokenRefused, looks_like_jwt, verify

SECRET = "s" * 64  # 64 bytes: PyJWT warns about shorter HS512 keys


def token(key: str | None = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def refusal(value: str, secret: str | None = SECRET) -> str:
    with pytest.raises(TokenRefused) as raised:
        verify(value, secret)
    return str(raised.value)


def in_(seconds: int) -> int:
    return int(time.time()) + seconds


def test_a_valid_token_names_its_subscriber_and_expiry() -> None:
    exp = in_(600)
    claims = verify(token(sub="user-1", exp=exp, name="extra claims are fine"), SECRET)
    assert claims.subscriber_id == "user-1"
    assert claims.expires_at == datetime.fromtimestamp(exp, UTC)


def test_the_secret_is_taken_as_the_settings_hold_it() -> None:
    value = token(sub="user-1", exp=in_(600))
    assert verify(value, SecretStr(SECRET)).subscriber_id == "user-1"
    with pytest.raises(TokenRefused):
        verify(value, SecretStr("t" * 64))


def test_an_expired_token_is_refused_past_the_leeway() -> None:
    assert verify(token(sub="u", exp=in_(-(LEEWAY_SECONDS - 3))), SECRET).subscriber_id == "u"
    assert refusal(token(sub="u", exp=in_(-(LEEWAY_SECONDS + 30)))) == "client token expired"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    forged = token(key="t" * 64, sub="u", exp=in_(60))
    assert refusal(forged) == "client token signature is invalid"


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_exp_and_sub_are_required(missing: str) -> None:
    claims: dict[str, Any] = {"sub": "u", "exp": in_(60)}
    del claims[missing]
    assert refusal(token(**claims)) == f"client token lacks the '{missing}' claim"


@pytest.mark.parametrize(
    ("algorithm", "key"), [("HS512", SECRET), ("none", None)], ids=["HS512", "none"]
)
def test_only_hs256_is_accepted(algorithm: str, key: str | None) -> None:
    value = token(key=key, algorithm=algorithm, sub="u", exp=in_(60))
    assert refusal(value) == "client token must be signed with HS256"


def test_the_subject_must_be_a_subscriber_id_of_1_to_255_characters() -> None:
    for sub in ("", "x" * 256):
        assert refusal(token(sub=sub, exp=in_(60))).startswith("client token's sub must be")
    assert verify(token(sub="x" * 255, exp=in_(60)), SECRET).subscriber_id == "x" * 255


def test_a_non_string_subject_or_expiry_is_refused() -> None:
    assert refusal(token(sub=42, exp=in_(60))).startswith("invalid client token")
    assert refusal(token(sub="u", exp="tomorrow")).startswith("invalid client token")


def test_a_token_not_valid_yet_is_refused() -> None:
    assert "not yet valid" in refusal(token(sub="u", exp=in_(600), nbf=in_(300)))


def test_garbage_is_refused() -> None:
    assert refusal("a.b.c").startswith("invalid client token")


@pytest.mark.parametrize("secret", [None, ""])
def test_without_a_secret_no_token_is_accepted(secret: str | None) -> None:
    valid = token(sub="u", exp=in_(60))
    assert refusal(valid, secret).startswith("client tokens are not enabled")


def test_only_a_value_with_two_dots_looks_like_a_jwt() -> None:
    assert looks_like_jwt(token(sub="u", exp=in_(60)))
    assert not looks_like_jwt("hk_ab12cd34_secret") and not looks_like_jwt("a.b")
