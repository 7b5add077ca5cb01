"""digests: per-type digest rules, digests (one window of one subscriber's emails), and the
held emails' group key and digest

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import herald.core.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_ONLY = sa.text("status = 'open'")


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", herald.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", herald.core.db.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "digest_rules",
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=True),
        sa.Column("daily_at", sa.String(length=5), nullable=True),
        sa.Column("group_by", sa.String(length=200), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("type", name=op.f("pk_digest_rules")),
    )
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("group_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("closes_at", herald.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", herald.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("email_id", sa.Integer(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_digests_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digests")),
    )
    # At most one open digest per subscriber, type and group key: concurrent triggers
    # cannot open two windows for one key.
    op.create_index(
        "uq_digests_open_key",
        "digests",
        ["user_id", "type", "group_key"],
        unique=True,
        sqlite_where=OPEN_ONLY,
        postgresql_where=OPEN_ONLY,
    )
    op.create_index("ix_digests_status_closes_at", "digests", ["status", "closes_at"])
    op.create_index(op.f("ix_digests_email_id"), "digests", ["email_id"])
    with op.batch_alter_table("email_notifications") as batch:
        batch.add_column(sa.Column("digest_key", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("digest_id", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_email_notifications_digest_id"), "email_notifications", ["digest_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_email_notifications_digest_id"), "email_notifications")
    with op.batch_alter_table("email_notifications") as batch:
        batch.drop_column("digest_id")
        batch.drop_column("digest_key")
    op.drop_table("digests")
    op.drop_table("digest_rules")
