"""subscribers keyed by the application's ids, API keys, and which key made a notification

Existing users become subscribers with `external_id` = their id (as text), the id they had
in Herald's API, so nothing that already addresses them changes. Username, email and password
become optional: a subscriber an application registers has none of them.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import herald.core.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sqlite_foreign_keys(on: bool) -> None:
    """SQLite changes a column's nullability by copying the table and dropping the old one;
    with foreign keys enforced, that DROP fails on every row another table refers to. SQLite's
    own recipe turns enforcement off around the copy (it takes effect only between
    transactions: this runs first in the migration's, before any write has begun one) and
    checks the references afterwards."""
    if op.get_bind().dialect.name != "sqlite":
        return
    if on:
        broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"foreign keys broken by the users copy: {broken[:5]}")
    op.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def upgrade() -> None:
    _sqlite_foreign_keys(on=False)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("name", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("locale", sa.String(length=35), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        # The default fills the rows that exist; new rows always get their data from Herald.
        batch.add_column(
            sa.Column("data", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.alter_column("username", existing_type=sa.String(length=64), nullable=True)
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=True)
        batch.alter_column("password_hash", existing_type=sa.String(length=255), nullable=True)
        batch.create_unique_constraint(op.f("uq_users_external_id"), ["external_id"])
    _sqlite_foreign_keys(on=True)
    op.execute("UPDATE users SET external_id = CAST(id AS VARCHAR(255))")

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", herald.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", herald.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    for table in ("email_notifications", "inapp_notifications"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("api_key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ("email_notifications", "inapp_notifications"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("api_key_id")
    op.drop_table("api_keys")
    # Subscribers without a username, address or password cannot exist before 0005.
    op.execute("DELETE FROM users WHERE username IS NULL OR email IS NULL OR password_hash IS NULL")
    _sqlite_foreign_keys(on=False)
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("uq_users_external_id"), type_="unique")
        batch.alter_column("password_hash", existing_type=sa.String(length=255), nullable=False)
        batch.alter_column("email", existing_type=sa.String(length=320), nullable=False)
        batch.alter_column("username", existing_type=sa.String(length=64), nullable=False)
        for column in ("data", "timezone", "locale", "name", "external_id"):
            batch.drop_column(column)
    _sqlite_foreign_keys(on=True)
