"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from herald.accounts.models import Login, PasswordReset, Session, User
from herald.apikeys.models import ApiKey
from herald.commerce.models import Purchase
from herald.core.db import Base
from herald.notifications.models import (
    DeliveryAttempt,
    EmailNotification,
    Escalation,
    InAppNotification,
)
from herald.social.models import FriendRequest
from herald.templates.models import StoredTemplate

__all__ = [
    "ApiKey",
    "Base",
    "DeliveryAttempt",
    "EmailNotification",
    "Escalation",
    "FriendRequest",
    "InAppNotification",
    "Login",
    "PasswordReset",
    "Purchase",
    "Session",
    "StoredTemplate",
    "User",
]
