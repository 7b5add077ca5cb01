"""Signups and logins: the `/api/signups` and `/api/logins` endpoints."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy import select

from herald.accounts import queries
from herald.accounts.deps import AccountsDep, CallerDep
from herald.accounts.models import User
from herald.accounts.schemas import (
    FailedLoginAlert,
    LoginIn,
    LoginOut,
    LoginRecordOut,
    SignupIn,
    SignupOut,
    SignupStatistics,
    UserOut,
    VerifyOut,
    WelcomeEmailStatus,
)
from herald.apikeys.deps import ReadDep
from herald.core.errors import NotFound
from herald.core.pagination import Page
from herald.notifications.models import EmailNotification
from herald.notifications.schemas import EmailTracking, InAppTracking, email_tracking, tracking
from herald.web.deps import ClientDep, DbDep, PageDep, rate_limited
from herald.web.errors import errors

router = APIRouter(prefix="/api", tags=["accounts"])

UserId = Annotated[int, Path(alias="userId", ge=1, le=2**31 - 1)]
signup_limit = Depends(rate_limited("signup", lambda s: s.rate_limit_signup))
login_limit = Depends(rate_limited("login", lambda s: s.rate_limit_login))


@router.post(
    "/signups",
    status_code=status.HTTP_201_CREATED,
    dependencies=[signup_limit],
    responses=errors(409, 429),
)
async def create_signup(
    data: SignupIn, accounts: AccountsDep, db: DbDep, client: ClientDep
) -> SignupOut:
    """Register a user; a welcome email with a verification link (valid 48 h) is sent."""
    user, welcome = await accounts.signup(data, client)
    async with db() as session:
        return SignupOut(
            **queries.user_fields(user), welcome_email=await email_tracking(session, welcome)
        )


@router.get("/signups", dependencies=[ReadDep])
async def list_signups(db: DbDep, page: PageDep) -> Page[UserOut]:
    """Every user, newest first (admin token)."""
    async with db() as session:
        return await queries.list_users(session, page)


@router.get("/signups/statistics", dependencies=[ReadDep])
async def signup_statistics(db: DbDep) -> SignupStatistics:
    async with db() as session:
        return await queries.signup_statistics(session)


@router.get("/signups/welcome-emails/failed", dependencies=[ReadDep])
async def failed_welcome_emails(db: DbDep, page: PageDep) -> Page[WelcomeEmailStatus]:
    """Welcome emails that ended in the dead-letter queue (admin token)."""
    async with db() as session:
        return await queries.failed_welcome_emails(session, page)


@router.post("/signups/verify/{token}", responses=errors(400))
async def verify_signup(
    token: Annotated[str, Path(min_length=1, max_length=256)], accounts: AccountsDep
) -> VerifyOut:
    """Confirm an email address with the token from the welcome email. Works once."""
    user = await accounts.verify_email(token)
    return VerifyOut(**queries.user_fields(user))


@router.get("/signups/{userId}/welcome-email-status", responses=errors(404))
async def welcome_email_status(user_id: UserId, db: DbDep, caller: CallerDep) -> WelcomeEmailStatus:
    """The welcome email's delivery status and history: the user's own, or any (admin)."""
    caller.ensure_may_see(user_id)
    async with db() as session:
        user = await session.get(User, user_id)
        welcome = await session.scalar(
            select(EmailNotification)
            .where(EmailNotification.user_id == user_id, EmailNotification.type == "signup")
            .order_by(EmailNotification.id)
            .limit(1)
        )
        if user is None or welcome is None:
            raise NotFound(f"no user {user_id}")
        return WelcomeEmailStatus(
            **queries.user_fields(user), welcome_email=await email_tracking(session, welcome)
        )


@router.post(
    "/logins",
    status_code=status.HTTP_201_CREATED,
    dependencies=[login_limit],
    responses={
        **errors(429),
        401: {**errors(401)[401], "description": "Invalid credentials; still recorded"},
    },
)
async def create_login(
    data: LoginIn, accounts: AccountsDep, db: DbDep, client: ClientDep, response: Response
) -> LoginOut:
    """Sign in: every attempt is recorded; success opens a session and sends a login-alert
    email and an in-app notification."""
    result = await accounts.login(data, client)
    response.headers["Cache-Control"] = "no-store"  # it carries a session token
    async with db() as session:
        blocks = await tracking(session, [result.alert, result.inapp])
    return LoginOut(
        login_id=result.login.id,
        user_id=result.user.id,
        username=result.user.username,
        email=result.user.email,
        login_successful=True,
        session_token=result.token,
        session_expires_at=result.session.expires_at,
        created_at=result.login.created_at,
        login_alert_email=cast(EmailTracking, blocks[(result.alert.channel, result.alert.id)]),
        login_in_app_notification=cast(
            InAppTracking, blocks[(result.inapp.channel, result.inapp.id)]
        ),
    )


@router.get("/logins")
async def list_logins(
    db: DbDep,
    caller: CallerDep,
    page: PageDep,
    user_id: Annotated[
        int | None, Query(alias="userId", ge=1, le=2**31 - 1, description="admin only")
    ] = None,
    successful: Annotated[bool | None, Query()] = None,
) -> Page[LoginRecordOut]:
    """Login history, newest first: your own attempts, or anyone's (admin, `userId` filter)."""
    if caller.user is not None:
        caller.ensure_may_see(user_id or caller.user.id)
        user_id = caller.user.id
    async with db() as session:
        return await queries.list_logins(session, page, user_id=user_id, successful=successful)


@router.get("/logins/alert-emails/failed", dependencies=[ReadDep])
async def failed_login_alerts(db: DbDep, page: PageDep) -> Page[FailedLoginAlert]:
    """Login-alert emails that ended in the dead-letter queue (admin token)."""
    async with db() as session:
        return await queries.failed_login_alerts(session, page)
