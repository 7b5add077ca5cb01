"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from herald.accounts.models import Login, PasswordReset, Session, User
from herald.apikeys.models import ApiKey
from herald.commerce.models import Purchase
from herald.core.db import Base
from herald.digests.models import Digest, DigestRule
from herald.notifications.models import (
    DeliveryAttempt,
    EmailNotification,
    Escalation,
    InAppNotification,
    WebhookDelivery,
)
from herald.preferences.models import AddressOptOut, NotificationType, Preference
from herald.social.models import FriendRequest
from herald.templates.models import StoredTemplate
from herald.webhooks.models import WebhookEndpoint

__all__ = [
    "AddressOptOut",
    "ApiKey",
    "Base",
    "DeliveryAttempt",
    "Digest",
    "DigestRule",
    "EmailNotification",
    "Escalation",
    "FriendRequest",
    "InAppNotification",
    "Login",
    "NotificationType",
    "PasswordReset",
    "Preference",
    "Purchase",
    "Session",
    "StoredTemplate",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
]
