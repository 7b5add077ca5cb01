"""Read-only views over users and logins: lists, statistics and failure lists."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from herald.accounts.models import Login, User
from herald.accounts.schemas import (
    FailedLoginAlert,
    LoginRecordOut,
    SignupStatistics,
    UserOut,
    WelcomeEmailStatus,
)
from herald.core.db import utcnow
from herald.core.pagination import Page, PageParams, fetch_page, page_of
from herald.notifications.models import EmailNotification, Status
from herald.notifications.schemas import EmailTracking, tracking
from herald.notifications.tracked import load_tracking

# Users who signed up (`/api/signups`), not subscribers an application registered.
SIGNED_UP = User.password_hash.is_not(None)


def user_fields(user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


async def list_users(session: AsyncSession, params: PageParams) -> Page[UserOut]:
    users, total = await fetch_page(
        session, select(User).where(SIGNED_UP).order_by(User.id.desc()), params
    )
    return page_of([UserOut(**user_fields(u)) for u in users], params, total)


async def signup_statistics(session: AsyncSession) -> SignupStatistics:
    now = utcnow()
    signed_up = select(func.count(User.id)).where(SIGNED_UP)
    total = await session.scalar(signed_up) or 0
    verified = await session.scalar(signed_up.where(User.email_verified)) or 0
    day = await session.scalar(signed_up.where(User.created_at > now - timedelta(days=1)))
    week = await session.scalar(signed_up.where(User.created_at > now - timedelta(days=7)))
    by_status = dict(
        (
            await session.execute(
                select(EmailNotification.status, func.count(EmailNotification.id))
                .where(EmailNotification.type == "signup")
                .group_by(EmailNotification.status)
            )
        )
        .tuples()
        .all()
    )
    return SignupStatistics(
        total_users=total,
        verified_users=verified,
        unverified_users=total - verified,
        signups_last_24h=day or 0,
        signups_last_7d=week or 0,
        welcome_emails={
            s.value: int(by_status.get(s.value, 0))
            for s in Status
            if s not in (Status.EXPIRED, Status.NOT_SENT, Status.SKIPPED)
        },
    )


async def failed_welcome_emails(
    session: AsyncSession, params: PageParams
) -> Page[WelcomeEmailStatus]:
    query = (
        select(User, EmailNotification)
        .join(EmailNotification, EmailNotification.user_id == User.id)
        .where(EmailNotification.type == "signup", EmailNotification.status == Status.FAILED)
        .order_by(EmailNotification.id.desc())
    )
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.execute(query.offset(params.offset).limit(params.limit))).tuples().all()
    blocks = await tracking(session, [email for _, email in rows])
    items = [
        WelcomeEmailStatus(
            **user_fields(user),
            welcome_email=cast(EmailTracking, blocks[(email.channel, email.id)]),
        )
        for user, email in rows
    ]
    return page_of(items, params, int(total or 0))


async def list_logins(
    session: AsyncSession, params: PageParams, *, user_id: int | None, successful: bool | None
) -> Page[LoginRecordOut]:
    query = select(Login).order_by(Login.id.desc())
    if user_id is not None:
        query = query.where(Login.user_id == user_id)
    if successful is not None:
        query = query.where(Login.login_successful == successful)
    logins, total = await fetch_page(session, query, params)
    return page_of(await _login_records(session, logins), params, total)


async def failed_login_alerts(session: AsyncSession, params: PageParams) -> Page[FailedLoginAlert]:
    alert = aliased(EmailNotification)
    query = (
        select(Login)
        .join(alert, alert.id == Login.login_alert_email_id)
        .where(alert.status == Status.FAILED)
        .order_by(Login.id.desc())
    )
    logins, total = await fetch_page(session, query, params)
    records = await _login_records(session, logins)
    items = [
        FailedLoginAlert(
            login_id=r.login_id,
            user_id=r.user_id,
            username=r.username,
            email=r.email,
            created_at=r.created_at,
            login_alert_email=cast(EmailTracking, r.login_alert_email),
        )
        for r in records
    ]
    return page_of(items, params, total)


async def _login_records(session: AsyncSession, logins: list[Login]) -> list[LoginRecordOut]:
    tracked = await load_tracking(
        session,
        email_ids=[x.login_alert_email_id for x in logins],
        inapp_ids=[x.login_inapp_notification_id for x in logins],
    )
    return [
        LoginRecordOut(
            login_id=x.id,
            user_id=x.user_id,
            username=x.username,
            email=x.email,
            login_successful=x.login_successful,
            failure_reason=x.failure_reason,
            session_id=x.session_id,
            ip_address=x.ip_address,
            user_agent=x.user_agent,
            assigned_server=x.assigned_server,
            created_at=x.created_at,
            login_alert_email=tracked.email(x.login_alert_email_id),
            login_in_app_notification=tracked.inapp(x.login_inapp_notification_id),
        )
        for x in logins
    ]
