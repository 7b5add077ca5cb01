"""Creating notifications: an email's or an in-app notification's row, ready to commit and
hand to the delivery queues (herald.delivery.dispatch)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from herald.core.config import Settings
from herald.core.db import utcnow
from herald.notifications import unsubscribe
from herald.notifications.ladder import ladder, total_attempts
from herald.notifications.models import (
    Channel,
    EmailNotification,
    InAppNotification,
    Status,
)

if TYPE_CHECKING:
    from herald.templates.store import TemplateStore

log = logging.getLogger(__name__)


def _queued(settings: Settings, channel: Channel) -> dict[str, Any]:
    """A new row is written `queued` for its first tier, in the same transaction as whatever
    caused it, so a dispatch costs no second write. Should the process die before its job
    reaches Redis, the reconciler finds a queued row without a job and enqueues it; if Redis
    refuses the job, `dispatch` turns the row back to `pending`."""
    return {"status": Status.QUEUED, "queue_name": ladder(settings, channel)[0].queue}


def new_email(
    settings: Settings,
    kind: str,
    *,
    to: str,
    username: str | None,
    user_id: int | None,
    context: dict[str, Any],
    telemetry_id: str | None,
    templates: TemplateStore,
    locale: str | None = None,
    template: str | None = None,
    unsubscribe_token: str | None = None,
) -> EmailNotification:
    """An email of type `kind`, its body rendered from `template`'s templates (by default,
    kind's own) in the recipient's `locale` (herald.templates.store says which one); with an
    `unsubscribe_token`, both bodies end with its one-click link."""
    subject, text, html = templates.render(
        template or kind, locale, {"username": username or to, **context}
    )
    if unsubscribe_token is not None:
        link = unsubscribe.url(settings, unsubscribe_token)
        text, html = unsubscribe.with_footer(text, html, link)
    return EmailNotification(
        type=kind,
        user_id=user_id,
        recipient_email=to,
        recipient_username=username,
        subject=subject,
        text=text,
        html=html,
        unsubscribe_token=unsubscribe_token,
        **_queued(settings, EmailNotification.channel),
        attempts=0,
        max_attempts=total_attempts(settings, EmailNotification.channel),
        telemetry_id=telemetry_id,
    )


def new_inapp(
    settings: Settings,
    kind: str,
    *,
    user_id: int,
    username: str | None,
    email: str | None,
    title: str,
    message: str,
    data: dict[str, Any] | None = None,
    priority: str = "normal",
    telemetry_id: str | None,
) -> InAppNotification:
    return InAppNotification(
        type=kind,
        user_id=user_id,
        recipient_username=username,
        recipient_email=email,
        title=title,
        message=message,
        data=data or {},
        priority=priority,
        **_queued(settings, InAppNotification.channel),
        attempts=0,
        max_attempts=total_attempts(settings, InAppNotification.channel),
        expires_at=utcnow() + timedelta(hours=settings.inapp_ttl_hours),
        is_read=False,
        telemetry_id=telemetry_id,
    )
