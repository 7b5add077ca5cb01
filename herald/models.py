"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from herald.accounts.models import Login, Session, User
from herald.core.db import Base
from herald.notifications.models import (
    DeliveryAttempt,
    EmailNotification,
    Escalation,
    InAppNotification,
)

__all__ = [
    "Base",
    "DeliveryAttempt",
    "EmailNotification",
    "Escalation",
    "InAppNotification",
    "Login",
    "Session",
    "User",
]
