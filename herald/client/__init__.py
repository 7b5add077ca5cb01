"""Herald's Python client: `HeraldClient` (blocking) and `AsyncHeraldClient` (asyncio), the
same calls on either, built on httpx.

    from herald.client import HeraldClient, sign_client_token

    herald = HeraldClient("http://localhost:8000", token=api_key)
    herald.upsert_subscriber("user-42", email="ada@example.com", name="Ada")
    herald.trigger(type="welcome", title="Welcome", message="Glad you're here",
                   recipients=["user-42"], channels=["inapp", "email"], idempotency_key="w-42")

    browser_token = sign_client_token(secret, "user-42")     # for the JS client
    HeraldClient(url, token=browser_token).inbox(unread=True)
"""

from herald.client.aio import AsyncHeraldClient
from herald.client.core import UNSET, RetryPolicy
from herald.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    HeraldAPIError,
    HeraldConnectionError,
    HeraldError,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    UnexpectedResponse,
    ValidationError,
)
from herald.client.models import (
    ApiKey,
    BulkResult,
    CreatedNotification,
    DeletedSubscriber,
    InboxItem,
    InboxPage,
    Marked,
    NotificationRecord,
    Subscriber,
    SubscriberPage,
    TriggerResult,
)
from herald.client.sync import HeraldClient
from herald.client.tokens import sign_client_token

__all__ = [
    "ApiKey",
    "AsyncHeraldClient",
    "BadRequest",
    "BulkResult",
    "Conflict",
    "CreatedNotification",
    "DeletedSubscriber",
    "Forbidden",
    "HeraldAPIError",
    "HeraldClient",
    "HeraldConnectionError",
    "HeraldError",
    "InboxItem",
    "InboxPage",
    "Marked",
    "NotFound",
    "NotificationRecord",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Subscriber",
    "SubscriberPage",
    "TriggerResult",
    "UNSET",
    "Unauthorized",
    "UnexpectedResponse",
    "ValidationError",
    "sign_client_token",
]
