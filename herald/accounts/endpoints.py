from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, status
from sqlalchemy import select

from herald.accounts import service
from herald.accounts.models import User
from herald.accounts.schemas import LoginIn, LoginOut, SignupIn, SignupOut, UserOut
from herald.core.errors import NotFound
from herald.notifications.models import EmailNotification
from herald.notifications.schemas import (
    EmailTracking,
    InAppTracking,
    email_tracking,
    tracking,
)
from herald.web.deps import ClientDep, HeraldDep

router = APIRouter(prefix="/api", tags=["accounts"])


class WelcomeEmailStatus(UserOut):
    welcome_email: EmailTracking


def _user_fields(user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "created_at": user.created_at,
    }


@router.post("/signups", status_code=status.HTTP_201_CREATED, response_model=SignupOut)
async def create_signup(data: SignupIn, herald: HeraldDep, client: ClientDep) -> SignupOut:
    user, welcome = await service.signup(herald, data, client)
    async with herald.db() as session:
        return SignupOut(**_user_fields(user), welcome_email=await email_tracking(session, welcome))


@router.get("/signups/{user_id}/welcome-email-status", response_model=WelcomeEmailStatus)
async def welcome_email_status(user_id: int, herald: HeraldDep) -> WelcomeEmailStatus:
    async with herald.db() as session:
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
            **_user_fields(user), welcome_email=await email_tracking(session, welcome)
        )


@router.post(
    "/logins",
    status_code=status.HTTP_201_CREATED,
    response_model=LoginOut,
    responses={401: {"description": "Invalid credentials; the attempt is still recorded."}},
)
async def create_login(data: LoginIn, herald: HeraldDep, client: ClientDep) -> LoginOut:
    result = await service.login(herald, data, client)
    async with herald.db() as session:
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
