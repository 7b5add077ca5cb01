"""Password resets: a single-use, expiring token sent by email; using it ends every session.

Asking for a reset answers the same whether or not the address has an account, so the endpoint
can't be used to find out who is registered.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from herald.accounts.models import PasswordReset, Session, User
from herald.accounts.sessions import SessionSockets
from herald.core.client import ClientInfo
from herald.core.db import transaction, utcnow
from herald.core.errors import ApiError
from herald.core.security import hash_password, hash_token, new_token
from herald.notifications.service import new_email

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from herald.core.config import Settings
    from herald.delivery.dispatch import Dispatcher
    from herald.templates.store import TemplateStore

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PasswordResets:
    """Sends reset links and changes passwords with them."""

    settings: Settings
    db: async_sessionmaker[AsyncSession]
    templates: TemplateStore
    dispatcher: Dispatcher
    disconnector: SessionSockets  # ends the ended sessions' sockets

    def _reset_url(self, token: str) -> str:
        return f"{self.settings.frontend_link_base}/reset-password/{token}"

    async def request_reset(self, email: str, client: ClientInfo) -> None:
        """Send a reset link if `email` has an account; do nothing visible otherwise."""
        address = email.strip().lower()
        ttl = timedelta(minutes=self.settings.reset_token_ttl_minutes)
        token = new_token()
        now = utcnow()
        async with transaction(self.db) as session:
            # Subscribers an application registered have no password to reset.
            user = await session.scalar(
                select(User).where(User.email == address, User.password_hash.is_not(None))
            )
            if user is None:
                log.info("accounts.reset.unknown_address")
                return
            # Only the newest link works: older ones still outstanding stop working now.
            await session.execute(
                update(PasswordReset)
                .where(
                    PasswordReset.user_id == user.id,
                    PasswordReset.used_at.is_(None),
                    PasswordReset.invalidated_at.is_(None),
                )
                .values(invalidated_at=now)
            )
            reset_email = new_email(
                self.settings,
                "reset_password",
                to=address,
                username=user.username,
                user_id=user.id,
                telemetry_id=client.telemetry_id,
                templates=self.templates,
                locale=user.locale,
                context={
                    "reset_url": self._reset_url(token),
                    "minutes": int(self.settings.reset_token_ttl_minutes),
                },
            )
            session.add(reset_email)
            await session.flush()
            session.add(
                PasswordReset(
                    user_id=user.id,
                    email=user.email,
                    token_hash=hash_token(token),
                    created_at=now,
                    expires_at=now + ttl,
                    ip_address=client.ip_address,
                    user_agent=client.user_agent,
                    assigned_server=self.settings.effective_server_id,
                    reset_email_id=reset_email.id,
                )
            )
        await self.dispatcher.dispatch([reset_email])

    async def confirm_reset(self, token: str, new_password: str) -> tuple[int, int]:
        """Set the new password; returns (user id, sessions ended). Raises 400 for a bad token."""
        password_hash = await asyncio.to_thread(hash_password, new_password)
        now = utcnow()
        async with transaction(self.db) as session:
            # Claim the token in one UPDATE: of two concurrent confirmations only one matches.
            claimed = await session.execute(
                update(PasswordReset)
                .where(
                    PasswordReset.token_hash == hash_token(token),
                    PasswordReset.used_at.is_(None),
                    PasswordReset.invalidated_at.is_(None),
                    PasswordReset.expires_at > now,
                )
                .values(used_at=now)
                .returning(PasswordReset.user_id)
            )
            user_id = claimed.scalar()
            if user_id is None:
                raise ApiError("reset token is invalid, used or expired", code="invalid_token")
            await session.execute(
                update(User)
                .where(User.id == user_id)
                .values(password_hash=password_hash, updated_at=now)
            )
            ended = list(
                (
                    await session.execute(
                        update(Session)
                        .where(Session.user_id == user_id, Session.revoked_at.is_(None))
                        .values(revoked_at=now)
                        .returning(Session.id)
                    )
                )
                .scalars()
                .all()
            )
            # Any other outstanding link for this account is now pointless, and a risk.
            await session.execute(
                update(PasswordReset)
                .where(
                    PasswordReset.user_id == user_id,
                    PasswordReset.used_at.is_(None),
                    PasswordReset.invalidated_at.is_(None),
                )
                .values(invalidated_at=now)
            )
        log.info("accounts.reset.completed", extra={"userId": user_id})
        await self.disconnector.sessions(ended)  # the old password's sockets go with its sessions
        return int(user_id), len(ended)
