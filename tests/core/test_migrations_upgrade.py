"""An existing database, at the revision before subscribers and API keys and holding data,
upgrades cleanly: every user becomes a subscriber keyed by their id, and nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from herald.core.db import MIGRATIONS_DIR, create_engine, run_migrations
from tests.fixtures.stacks import PG_URL, scratch_database

PREVIOUS = "0004"
NOW = "2026-12-01 10:00:00+00:00"


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


def _upgrade(url: str, revision: str) -> None:
    command.upgrade(_config(url), revision)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'herald.db'}"
        return
    if not PG_URL:
        pytest.skip("HERALD_TEST_DATABASE_URL not set")
    async with scratch_database(PG_URL, "herald_migrate") as url:
        yield url


SEED = [
    "INSERT INTO users (id, username, email, password_hash, email_verified, created_at, updated_at)"
    f" VALUES (1, 'ada', 'ada@example.com', 'x', true, '{NOW}', '{NOW}'),"
    f" (2, 'bob', 'bob@example.com', 'y', false, '{NOW}', '{NOW}')",
    "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at)"
    f" VALUES (1, 1, 'h1', '{NOW}', '{NOW}')",
    "INSERT INTO email_notifications (id, type, user_id, recipient_email, subject, html, text,"
    " status, attempts, max_attempts, created_at, updated_at) VALUES (1, 'signup', 1,"
    f" 'ada@example.com', 'Welcome', '<p>hi</p>', 'hi', 'delivered', 1, 8, '{NOW}', '{NOW}')",
    "INSERT INTO inapp_notifications (id, type, user_id, title, message, data, priority, status,"
    " attempts, max_attempts, expires_at, is_read, created_at, updated_at) VALUES (1, 'login', 2,"
    f" 'New sign-in', 'hello', '{{}}', 'normal', 'queued', 0, 8, '{NOW}', false, '{NOW}', '{NOW}')",
    "INSERT INTO friend_requests (id, from_user_id, from_username, to_user_id, to_username,"
    " pair_low, pair_high, request_status, mutual_friends, mutual_friends_count,"
    " relationship_type, previous_interactions, blocked_by_receiver, reported_as_spam,"
    " visibility, expires_at, metadata, created_at, updated_at) VALUES (1, 1, 'ada', 2, 'bob',"
    " 1, 2, 'pending', '[]', 0, 'none', 0, false, false, 'normal',"
    f" '{NOW}', '{{}}', '{NOW}', '{NOW}')",
]


async def _execute(url: str, statements: list[str]) -> list[list[tuple[object, ...]]]:
    engine = create_engine(url)
    results = []
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(text(statement))
                results.append([tuple(r) for r in result] if result.returns_rows else [])
    finally:
        await engine.dispose()
    return results


async def test_a_database_with_data_upgrades_and_keeps_it(database_url: str) -> None:
    await asyncio.to_thread(_upgrade, database_url, PREVIOUS)
    await _execute(database_url, SEED)

    await asyncio.to_thread(run_migrations, database_url)  # to head, as every start does

    users, counts, version = await _execute(
        database_url,
        [
            "SELECT id, username, email, external_id, data FROM users ORDER BY id",
            "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM email_notifications),"
            " (SELECT count(*) FROM inapp_notifications), (SELECT count(*) FROM friend_requests),"
            " (SELECT count(*) FROM api_keys)",
            "SELECT version_num FROM alembic_version",
        ],
    )
    assert [(u[0], u[1], u[2], u[3]) for u in users] == [
        (1, "ada", "ada@example.com", "1"),
        (2, "bob", "bob@example.com", "2"),
    ]
    assert all(u[4] in ({}, "{}") for u in users)  # JSON: a dict on PostgreSQL, text on SQLite
    assert counts == [(1, 1, 1, 1, 0)]
    assert version == [(ScriptDirectory.from_config(_config(database_url)).get_current_head(),)]

    # The new columns work on the upgraded database: a bare subscriber (no username, email or
    # password) and a notification that records its API key.
    await _execute(
        database_url,
        [
            "INSERT INTO users (id, external_id, data, email_verified, created_at, updated_at)"
            f" VALUES (3, 'app-user-7', '{{}}', false, '{NOW}', '{NOW}')",
            "UPDATE inapp_notifications SET api_key_id = 3 WHERE id = 1",
        ],
    )
    # Upgrading again (every start does) finds nothing to do.
    await asyncio.to_thread(run_migrations, database_url)
