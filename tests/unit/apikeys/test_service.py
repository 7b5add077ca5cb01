"""herald.apikeys.service: the shape of API keys, the admin token check, and scopes."""

from __future__ import annotations

import hashlib
import re

from herald.apikeys.models import Scope
from herald.apikeys.service import (
    ADMIN,
    KeyCache,
    Principal,
    hash_key,
    looks_like_key,
    new_key,
)
from herald.subscribers.tokens import looks_like_jwt

ADMIN_TOKEN = "the-admin-token"


def test_a_new_key_carries_its_public_prefix_and_looks_like_a_key() -> None:
    key, prefix = new_key()
    assert re.fullmatch(r"[0-9a-f]{8}", prefix)
    assert key.startswith(f"hk_{prefix}_") and len(key) > 40
    assert looks_like_key(key) and not looks_like_jwt(key)
    assert new_key()[0] != key


def test_only_the_hk_prefix_looks_like_a_key() -> None:
    assert not looks_like_key("HK_abc_def")
    assert not looks_like_key("a-session-token")
    assert not looks_like_key("eyJhbGciOiJIUzI1NiJ9.e30.sig")


def test_a_key_is_stored_as_its_sha256() -> None:
    key, _ = new_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert hash_key(key) != hash_key(key + "x")


def test_a_key_allows_only_its_scopes_and_the_admin_every_one() -> None:
    trigger_only = Principal(key_id=3, name="backend", scopes=frozenset({Scope.TRIGGER}))
    assert trigger_only.allows(Scope.TRIGGER)
    assert not any(trigger_only.allows(s) for s in Scope if s is not Scope.TRIGGER)
    assert all(ADMIN.allows(s) for s in Scope)
    assert ADMIN.key_id is None


def test_only_the_exact_admin_token_is_the_admin() -> None:
    cache = KeyCache(db=None, admin_token=ADMIN_TOKEN)  # type: ignore[arg-type]
    assert cache.is_admin(ADMIN_TOKEN)
    for near in ("", ADMIN_TOKEN[:-1], ADMIN_TOKEN + " ", ADMIN_TOKEN.upper()):
        assert not cache.is_admin(near)


async def test_the_admin_token_and_a_token_of_no_key_shape_need_no_query() -> None:
    cache = KeyCache(db=None, admin_token=ADMIN_TOKEN)  # type: ignore[arg-type]  # never used
    assert await cache.principal(ADMIN_TOKEN) is ADMIN
    assert await cache.principal("a-session-token") is None
