"""dead letters can be discarded with a reason

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import herald.core.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("email_notifications", "inapp_notifications")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("discarded_at", herald.core.db.UTCDateTime(timezone=True), nullable=True)
            )
            batch.add_column(sa.Column("discard_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("discard_reason")
            batch.drop_column("discarded_at")
