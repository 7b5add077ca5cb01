"""subscribers' preferences, declared notification types, address opt-outs, unsubscribe tokens

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import herald.core.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscriber_preferences",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", herald.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_subscriber_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "type", "channel", name=op.f("pk_subscriber_preferences")
        ),
    )
    op.create_table(
        "notification_types",
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("created_at", herald.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", herald.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("type", name=op.f("pk_notification_types")),
    )
    op.create_table(
        "address_opt_outs",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("created_at", herald.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email", "type", name=op.f("pk_address_opt_outs")),
    )
    with op.batch_alter_table("email_notifications") as batch:
        batch.add_column(sa.Column("unsubscribe_token", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_notifications") as batch:
        batch.drop_column("unsubscribe_token")
    # Skipped notifications cannot exist before 0006: they were never sent, so they go.
    for table in ("email_notifications", "inapp_notifications"):
        op.execute(f"DELETE FROM {table} WHERE status = 'skipped'")
    op.drop_table("address_opt_outs")
    op.drop_table("notification_types")
    op.drop_table("subscriber_preferences")
