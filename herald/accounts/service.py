"""Signups, logins and sessions, with the notifications each one sends."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import ColumnElement, Select, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.models import Login, Session, User
from herald.accounts.schemas import LoginIn, SignupIn
from herald.accounts.sessions import SessionSockets
from herald.core import driver
from herald.core.client import ClientInfo
from herald.core.db import transaction, utcnow
from herald.core.errors import ApiError, Conflict, Unauthorized
from herald.core.security import hash_password, hash_token, new_token, verify_password
from herald.notifications.models import EmailNotification, InAppNotification
from herald.notifications.service import new_email, new_inapp

if TYPE_CHECKING:
    from herald.core.config import Settings
    from herald.core.ratelimit import RateLimiter
    from herald.delivery.dispatch import Dispatcher
    from herald.templates.store import TemplateStore

VERIFICATION_TTL = timedelta(hours=48)


async def _claim_external_id(session: AsyncSession, user: User) -> None:
    """A signed-up user is a subscriber too, keyed by their id as text, unless an application
    already registered a subscriber under that id (then they have none until one is set)."""
    wanted = str(user.id)
    if await session.scalar(select(User.id).where(User.external_id == wanted)) is None:
        user.external_id = wanted


async def _ensure_unique(session: AsyncSession, username: str, email: str) -> None:
    if await session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise Conflict("username already taken", "username")
    if await session.scalar(select(User.id).where(User.email == email)):
        raise Conflict("email already registered", "email")


@dataclass
class LoginResult:
    login: Login
    user: User
    session: Session
    token: str
    alert: EmailNotification
    inapp: InAppNotification


async def session_for_token(session: AsyncSession, token: str) -> tuple[User, Session] | None:
    """The user and the live session behind a bearer token, or None."""
    if not token:
        return None
    params = {"token_hash": hash_token(token), "now": utcnow()}
    row = (await session.execute(_by_token(), params)).first()
    return (row[0], row[1]) if row else None


@functools.cache
def _by_token() -> Select[User, Session]:
    """`session_for_token`'s query, built once: every request with a session token runs it,
    and building it and its cache key cost about as much CPU as running it. Binds token_hash
    and now."""
    return select(User, Session).join(Session, Session.user_id == User.id).where(*_live_token())


class TokenLogin(NamedTuple):
    """What a socket signing in with a session token needs of its user and session."""

    user_id: int
    username: str | None
    external_id: str | None
    session_id: int
    expires_at: datetime


async def login_for_token(db: async_sessionmaker[AsyncSession], token: str) -> TokenLogin | None:
    """`session_for_token` for a socket's sign-in: the few columns it needs, read through the
    driver (herald.core.driver; no ORM objects), retried once on a dropped connection. Every
    socket connect runs it: loading the user and session as ORM objects (and the backlog,
    `inbox.backlog_if_live`) was ~25 % of an API server's CPU while sockets connected
    (docs/benchmarks.md)."""
    if not token:
        return None
    params = {"token_hash": hash_token(token), "now": utcnow()}
    rows = await driver.read(db, _login_by_token(), params)
    return TokenLogin(**rows[0]) if rows else None


@functools.cache
def _login_by_token() -> Select[Any]:
    columns: tuple[Any, ...] = (
        User.id.label("user_id"),
        User.username,
        User.external_id,
        Session.id.label("session_id"),
        Session.expires_at,
    )
    return select(*columns).join(Session, Session.user_id == User.id).where(*_live_token())


def _live_token() -> tuple[ColumnElement[bool], ...]:
    """A session that the bound token_hash opened, not revoked, not expired at the bound now."""
    return (
        Session.token_hash == bindparam("token_hash"),
        Session.revoked_at.is_(None),
        Session.expires_at > bindparam("now"),
    )


@dataclass(eq=False)
class Accounts:
    """Signups, logins, email verification and sessions, with the notifications they send."""

    settings: Settings
    db: async_sessionmaker[AsyncSession]
    templates: TemplateStore
    dispatcher: Dispatcher
    rate_limiter: RateLimiter
    disconnector: SessionSockets  # ends the ended sessions' sockets

    async def signup(self, data: SignupIn, client: ClientInfo) -> tuple[User, EmailNotification]:
        password_hash = await asyncio.to_thread(hash_password, data.password)  # ~50 ms of CPU
        token = new_token()
        email_address = data.email.lower()
        try:
            async with transaction(self.db) as session:
                await _ensure_unique(session, data.username, email_address)
                user = User(
                    username=data.username,
                    email=email_address,
                    password_hash=password_hash,
                    verification_token_hash=hash_token(token),
                    verification_expires_at=utcnow() + VERIFICATION_TTL,
                )
                session.add(user)
                await session.flush()
                await _claim_external_id(session, user)
                welcome = new_email(
                    self.settings,
                    "signup",
                    to=email_address,
                    username=user.username,
                    user_id=user.id,
                    context={"verify_url": self._verify_url(token)},
                    telemetry_id=client.telemetry_id,
                    templates=self.templates,
                    locale=user.locale,
                )
                session.add(welcome)
        except IntegrityError:  # a concurrent signup won the race for the same name or address
            raise Conflict("username or email already registered", "email") from None
        await self.dispatcher.dispatch([welcome])
        return user, welcome

    def _verify_url(self, token: str) -> str:
        return f"{self.settings.frontend_link_base}/verify/{token}"

    async def login(self, data: LoginIn, client: ClientInfo) -> LoginResult:
        """Record the attempt whatever its outcome; on success open a session and notify."""
        user, ok = await self._check_credentials(data)
        now = utcnow()
        async with transaction(self.db) as session:
            record = Login(
                user_id=user.id if user else None,
                username=user.username if user else (data.username or None),
                email=user.email if user else (data.email or None),
                login_successful=ok,
                failure_reason=None
                if ok
                else ("unknown_user" if user is None else "wrong_password"),
                ip_address=client.ip_address,
                user_agent=client.user_agent,
                assigned_server=self.settings.effective_server_id,
                created_at=now,
            )
            session.add(record)
            if not ok or user is None:
                result = None
            else:
                result = await self._open_session(session, record, user, client, now)
        if result is None:
            raise Unauthorized("invalid credentials", code="invalid_credentials")
        await self.dispatcher.dispatch([result.alert, result.inapp])
        return result

    async def _open_session(
        self, session: AsyncSession, record: Login, user: User, client: ClientInfo, now: datetime
    ) -> LoginResult:
        token = new_token()
        opened = Session(
            user_id=user.id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + timedelta(hours=self.settings.session_ttl_hours),
            ip_address=client.ip_address,
            user_agent=client.user_agent,
        )
        context = {
            "time": now.strftime("%Y-%m-%d %H:%M UTC"),
            "ip_address": client.ip_address or "an unknown address",
            "user_agent": client.user_agent or "unknown device",
        }
        assert user.email is not None  # a signed-up user keeps an address (subscribers.service)
        alert = new_email(
            self.settings,
            "login",
            to=user.email,
            username=user.username,
            user_id=user.id,
            context=context,
            telemetry_id=client.telemetry_id,
            templates=self.templates,
            locale=user.locale,
        )
        inapp = new_inapp(
            self.settings,
            "login",
            user_id=user.id,
            username=user.username,
            email=user.email,
            title="New sign-in",
            message=f"Signed in from {context['ip_address']} at {context['time']}.",
            data={"ipAddress": client.ip_address, "userAgent": client.user_agent},
            telemetry_id=client.telemetry_id,
        )
        session.add_all([opened, alert, inapp])
        await session.flush()
        record.session_id = opened.id
        record.login_alert_email_id = alert.id
        record.login_inapp_notification_id = inapp.id
        return LoginResult(record, user, opened, token, alert, inapp)

    async def verify_email(self, token: str) -> User:
        """Mark the address behind a verification token as verified; the token then stops
        working."""
        async with transaction(self.db) as session:
            user = await session.scalar(
                select(User).where(
                    User.verification_token_hash == hash_token(token),
                    User.verification_expires_at > utcnow(),
                )
            )
            if user is None:
                raise ApiError("verification token is invalid or expired", code="invalid_token")
            user.email_verified = True
            user.verification_token_hash = None
            user.verification_expires_at = None
        return user

    async def authenticate(self, data: LoginIn) -> User | None:
        """The user these credentials belong to, or None; costs the same whether or not one
        exists."""
        user, ok = await self._check_credentials(data)
        return user if ok else None

    async def _check_credentials(self, data: LoginIn) -> tuple[User | None, bool]:
        """The account the identifier names (if any) and whether the password fits it. A missing
        account is checked against a dummy hash, so both cases take the same time.

        Failures are also counted per account, whatever address they come from: past
        HERALD_LOGIN_FAILURES_PER_ACCOUNT, the account's sign-ins get 429 for the lockout window
        (the per-address limit alone lets a botnet try one password per address)."""
        settings = self.settings
        account = hashlib.sha256(data.identifier.encode()).hexdigest()
        await self.rate_limiter.check("login-account", account, settings.login_failures_per_account)
        user, ok = await self._verify(data)
        if not ok and settings.login_failures_per_account:
            await self.rate_limiter.count("login-account", account, settings.login_lockout_window)
        return user, ok

    async def _verify(self, data: LoginIn) -> tuple[User | None, bool]:
        async with self.db() as session:
            user = await session.scalar(
                select(User).where(
                    or_(User.email == data.identifier, func.lower(User.username) == data.identifier)
                )
            )
        ok = await asyncio.to_thread(
            verify_password, user.password_hash if user else None, data.password
        )
        return user, ok

    async def open_session(self, user: User, client: ClientInfo) -> tuple[Session, str]:
        """A new session for an already authenticated user, and its bearer token (shown once)."""
        token = new_token()
        now = utcnow()
        opened = Session(
            user_id=user.id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + timedelta(hours=self.settings.session_ttl_hours),
            ip_address=client.ip_address,
            user_agent=client.user_agent,
        )
        async with transaction(self.db) as session:
            session.add(opened)
        return opened, token

    async def revoke_sessions(self, user_id: int, only: int | None = None) -> int:
        """End one session of the user (`only`), or all of them; returns how many ended."""
        query = update(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None))
        if only is not None:
            query = query.where(Session.id == only)
        async with transaction(self.db) as session:
            result = await session.execute(query.values(revoked_at=utcnow()).returning(Session.id))
            ended = list(result.scalars().all())
        # After the commit: a socket authenticating meanwhile re-checks its session once bound.
        await self.disconnector.sessions(ended)
        return len(ended)
