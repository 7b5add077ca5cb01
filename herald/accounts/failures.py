"""The seed's failure lists: welcome and login-alert emails that ended in the dead-letter queue."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from herald.accounts.models import Login, User
from herald.core.schemas import CamelModel
from herald.notifications.models import EmailNotification, Status
from herald.notifications.schemas import EmailTracking, email_trackings
from herald.web.deps import AdminDep, HeraldDep

router = APIRouter(prefix="/api", tags=["accounts"], dependencies=[AdminDep])


class FailedWelcome(CamelModel):
    user_id: int
    username: str
    email: str
    welcome_email: EmailTracking


class FailedWelcomePage(CamelModel):
    items: list[FailedWelcome]
    page: int
    limit: int
    total: int


class FailedAlert(CamelModel):
    login_id: int
    user_id: int | None
    username: str | None
    email: str | None
    created_at: datetime
    login_alert_email: EmailTracking


class FailedAlertPage(CamelModel):
    items: list[FailedAlert]
    page: int
    limit: int
    total: int


Page = Query(1, ge=1)
Limit = Query(50, ge=1, le=500)


@router.get("/signups/welcome-emails/failed", response_model=FailedWelcomePage)
async def failed_welcome_emails(
    herald: HeraldDep, page: int = Page, limit: int = Limit
) -> FailedWelcomePage:
    query = (
        select(User, EmailNotification)
        .join(EmailNotification, EmailNotification.user_id == User.id)
        .where(EmailNotification.type == "signup", EmailNotification.status == Status.FAILED)
    )
    async with herald.db() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = (
            await session.execute(
                query.order_by(EmailNotification.id.desc()).offset((page - 1) * limit).limit(limit)
            )
        ).all()
        blocks = await email_trackings(session, [email for _, email in rows])
    items = [
        FailedWelcome(
            user_id=user.id,
            username=user.username,
            email=user.email,
            welcome_email=blocks[email.id],
        )  # fmt: skip
        for user, email in rows
    ]
    return FailedWelcomePage(items=items, page=page, limit=limit, total=total)


@router.get("/logins/alert-emails/failed", response_model=FailedAlertPage)
async def failed_login_alerts(
    herald: HeraldDep, page: int = Page, limit: int = Limit
) -> FailedAlertPage:
    query = (
        select(Login, EmailNotification)
        .join(EmailNotification, EmailNotification.id == Login.login_alert_email_id)
        .where(EmailNotification.status == Status.FAILED)
    )
    async with herald.db() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = (
            await session.execute(
                query.order_by(Login.id.desc()).offset((page - 1) * limit).limit(limit)
            )
        ).all()
        blocks = await email_trackings(session, [email for _, email in rows])
    items = [
        FailedAlert(
            login_id=login.id,
            user_id=login.user_id,
            username=login.username,
            email=login.email,
            created_at=login.created_at,
            login_alert_email=blocks[email.id],
        )  # fmt: skip
        for login, email in rows
    ]
    return FailedAlertPage(items=items, page=page, limit=limit, total=total)
