"""herald.core.config: settings validation and the values derived from settings
(tests/core/test_config.py covers the seed's names and defaults)."""

from __future__ import annotations

from typing import Any

import pytest

from herald.core.config import Settings, SettingsError, load_settings


def settings(**values: Any) -> Settings:
    return load_settings(_env_file=None, **values)


def problem(**values: Any) -> str:
    with pytest.raises(SettingsError) as raised:
        settings(**values)
    return str(raised.value)


def test_pasted_database_urls_get_async_drivers() -> None:
    assert settings(database_url="postgres://u@h/db").database_url == "postgresql+asyncpg://u@h/db"
    assert settings(database_url="sqlite:///x.db").database_url == "sqlite+aiosqlite:///x.db"
    kept = "postgresql+asyncpg://u@h/db"
    assert settings(database_url=kept).database_url == kept
    assert problem(database_url="mysql://u@h/db") == (
        "invalid setting DATABASE_URL='mysql://u@h/db': must be a postgresql:// or sqlite:// URL"
    )


def test_the_public_url_is_http_without_a_trailing_slash() -> None:
    assert settings(public_url="https://h.example/").effective_public_url == "https://h.example"
    assert "must be an http:// or https:// URL" in problem(public_url="h.example")


def test_without_a_public_url_links_point_at_the_server() -> None:
    assert settings(public_url=None, host="0.0.0.0", port=8080).effective_public_url == (
        "http://localhost:8080"
    )
    assert settings(public_url=None, host="10.0.0.2", port=80).effective_public_url == (
        "http://10.0.0.2:80"
    )


def test_the_unsubscribe_mailto_is_a_plain_address() -> None:
    assert settings(unsubscribe_mailto="unsub@example.com").unsubscribe_mailto == (
        "unsub@example.com"
    )
    assert settings(unsubscribe_mailto="").unsubscribe_mailto is None
    for wrong in ("nobody", "Unsub <unsub@example.com>", "unsub@example.com?subject=x"):
        assert "must be a plain email address" in problem(unsubscribe_mailto=wrong), wrong


def test_a_redis_url_needs_a_redis_scheme() -> None:
    assert settings(redis_url="unix:///run/redis.sock").configured_redis_url == (
        "unix:///run/redis.sock"
    )
    assert "REDIS_URL" in problem(redis_url="localhost:6379")


def test_origin_lists_are_split_and_trimmed() -> None:
    s = settings(
        cors_origin=" https://a.example , ,https://b.example",
        frontend_url="https://app.example/ , https://x",
    )
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.frontend_link_base == "https://app.example"


def test_signing_secrets_must_be_32_characters_and_are_not_shown() -> None:
    message = problem(client_token_secret="short-but-secret")
    assert message.startswith("invalid setting CLIENT_TOKEN_SECRET: ")
    assert "short-but-secret" not in message
    assert settings(client_token_secret="c" * 32).client_token_secret is not None


def test_an_invalid_unsubscribe_secret_is_not_shown() -> None:
    message = problem(unsubscribe_secret="short-but-secret")
    assert "short-but-secret" not in message and "UNSUBSCRIBE_SECRET" in message
