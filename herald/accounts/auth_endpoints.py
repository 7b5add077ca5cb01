"""Sessions (open, list, logout) and password resets (request, confirm)."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response, status
from sqlalchemy import select

from herald.accounts.deps import AccountsDep, CallerDep, CurrentSessionDep
from herald.accounts.models import Session, User
from herald.accounts.resets import PasswordResets
from herald.accounts.schemas import (
    LogoutOut,
    ResetConfirmIn,
    ResetConfirmOut,
    ResetRequestIn,
    ResetRequestOut,
    SessionCreatedOut,
    SessionIn,
    SessionOut,
    UserSessions,
)
from herald.core.client import ClientInfo
from herald.core.db import utcnow
from herald.core.errors import NotFound, Unauthorized
from herald.core.security import hash_token
from herald.web.deps import ClientDep, DbDep, LimiterDep, SettingsDep, app_state, rate_limited
from herald.web.errors import errors

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["sessions and password resets"])

login_limit = Depends(rate_limited("login", lambda s: s.rate_limit_login))
reset_limit = Depends(rate_limited("reset", lambda s: s.rate_limit_reset))
ResetsDep = Annotated[PasswordResets, app_state("resets")]
RESET_ANSWER = "If an account exists for that address, a reset link is on its way."


@router.post(
    "/session",
    status_code=status.HTTP_201_CREATED,
    dependencies=[login_limit],
    responses=errors(401, 429),
)
async def create_session(
    data: SessionIn, accounts: AccountsDep, client: ClientDep, response: Response
) -> SessionCreatedOut:
    """Open a session with a username or email and password (no login alert is sent; use
    `POST /api/logins` for a sign-in that is recorded and sends a login alert)."""
    user = await accounts.authenticate(data)
    if user is None:
        raise Unauthorized("invalid credentials", code="invalid_credentials")
    opened, token = await accounts.open_session(user, client)
    response.headers["Cache-Control"] = "no-store"  # it carries a session token
    return SessionCreatedOut(
        session_id=opened.id,
        user_id=user.id,
        username=user.username,
        session_token=token,
        created_at=opened.created_at,
        expires_at=opened.expires_at,
    )


@router.get("/session/{userId}", responses=errors(404))
async def get_sessions(
    user_id: Annotated[int, Path(alias="userId", ge=1, le=2**31 - 1)],
    sessions_of: DbDep,
    caller: CallerDep,
    request: Request,
) -> UserSessions:
    """A user's live sessions (never their tokens): your own, or anyone's (admin)."""
    caller.ensure_may_see(user_id)
    current_hash = _bearer_hash(request)
    async with sessions_of() as db:
        user = await db.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        live = await db.scalars(
            select(Session)
            .where(
                Session.user_id == user_id,
                Session.revoked_at.is_(None),
                Session.expires_at > utcnow(),
            )
            .order_by(Session.id.desc())
        )
        sessions = [
            SessionOut(
                session_id=s.id,
                user_id=s.user_id,
                created_at=s.created_at,
                expires_at=s.expires_at,
                ip_address=s.ip_address,
                user_agent=s.user_agent,
                current=s.token_hash == current_hash,
            )
            for s in live
        ]
    return UserSessions(user_id=user.id, username=user.username, sessions=sessions)


def _bearer_hash(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return hash_token(token) if scheme.lower() == "bearer" and token else None


@router.delete("/session")
async def logout(
    auth: CurrentSessionDep,
    accounts: AccountsDep,
    everywhere: Annotated[
        bool, Query(alias="all", description="end every session of this user, not just this")
    ] = False,
) -> LogoutOut:
    """Log out: end this session (or, with `all=true`, every session of the user)."""
    ended = await accounts.revoke_sessions(
        auth.user.id, only=None if everywhere else auth.session.id
    )
    return LogoutOut(sessions_ended=ended)


@router.post(
    "/reset-passwords",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[reset_limit],
    responses=errors(429),
)
async def request_password_reset(
    data: ResetRequestIn,
    settings: SettingsDep,
    password_resets: ResetsDep,
    client: ClientDep,
    limiter: LimiterDep,
    background: BackgroundTasks,
) -> ResetRequestOut:
    """Ask for a reset link by email. The answer is the same whether or not the address has
    an account, and comes before any work is done, so its timing says nothing either."""
    # Also per address, so nobody can flood one inbox from many machines.
    address_key = hashlib.sha256(data.email.strip().lower().encode()).hexdigest()
    await limiter.hit("reset-address", address_key, settings.rate_limit_reset)
    background.add_task(_request_reset, password_resets, data.email, client)
    return ResetRequestOut(message=RESET_ANSWER)


async def _request_reset(resets: PasswordResets, email: str, client: ClientInfo) -> None:
    try:
        await resets.request_reset(email, client)
    except Exception:  # after the answer went out: all that is left to do is say so
        log.exception("accounts.reset.request_failed")


@router.post("/reset-passwords/confirm", dependencies=[reset_limit], responses=errors(400, 429))
async def confirm_password_reset(data: ResetConfirmIn, resets: ResetsDep) -> ResetConfirmOut:
    """Set a new password with the emailed token. The token works once, until it expires;
    every session of the account ends."""
    user_id, ended = await resets.confirm_reset(data.token, data.new_password)
    return ResetConfirmOut(user_id=user_id, sessions_ended=ended)
