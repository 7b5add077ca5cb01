"""in-app notifications record the client's acknowledgement

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import herald.core.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inapp_notifications") as batch:
        batch.add_column(
            sa.Column("acked_at", herald.core.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Catch-up asks for a user's unacknowledged notifications on every authenticate.
    op.create_index("ix_inapp_user_unacked", "inapp_notifications", ["user_id", "acked_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_inapp_user_unacked", "inapp_notifications")
    with op.batch_alter_table("inapp_notifications") as batch:
        batch.drop_column("acked_at")
