"""Alembic environment: runs migrations on Herald's async engine, PostgreSQL or SQLite."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from herald.core.db import create_engine
from herald.models import Base

config = context.config
target_metadata = Base.metadata
# Any fixed number: every Herald process that migrates at start takes the same lock.
MIGRATION_LOCK = 7_147_101


def _migrate(connection: Connection) -> None:
    is_postgres = connection.dialect.name == "postgresql"
    if is_postgres:
        # Several API servers may start at once; one migrates, the others wait and find
        # nothing left to do.
        connection.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK})"))
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if is_postgres:
            connection.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            connection.commit()


async def _run() -> None:
    engine = create_engine(config.attributes["database_url"])
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(_run())
