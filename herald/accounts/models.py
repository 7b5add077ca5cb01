"""Users (the accounts `/api/signups` creates), their sessions, and every login attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base, Timestamped


class User(Timestamped, Base):
    """Someone Herald notifies: a signed-up user, or a subscriber the application registered
    by its own id (`external_id`), who has no username or password and may have no email.

    One table for both, so everything keyed by a user (in-app rows, Socket.IO rooms, presence,
    catch-up, the inbox) serves subscribers unchanged. A signed-up user's `external_id` is
    `str(id)` unless that id was already taken by a subscriber."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    email_verified: Mapped[bool] = mapped_column(default=False)
    verification_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    verification_expires_at: Mapped[datetime | None]


class Session(Base):
    """A signed-in session. Only the SHA-256 of the bearer token is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)


class Login(Base):
    """One login attempt, successful or not, with the notifications it caused."""

    __tablename__ = "logins"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    username: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    login_successful: Mapped[bool]
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    assigned_server: Mapped[str | None] = mapped_column(String(128))
    login_alert_email_id: Mapped[int | None] = mapped_column(ForeignKey("email_notifications.id"))
    login_inapp_notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("inapp_notifications.id")
    )
    created_at: Mapped[datetime]


class PasswordReset(Base):
    """One password-reset request. Only the SHA-256 of its token is stored; a token works once,
    until `expires_at`, and only while no newer request or completed reset replaced it."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    invalidated_at: Mapped[datetime | None]
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    assigned_server: Mapped[str | None] = mapped_column(String(128))
    reset_email_id: Mapped[int | None] = mapped_column(ForeignKey("email_notifications.id"))
