from __future__ import annotations

from datetime import datetime

from pydantic import EmailStr, Field, model_validator

from herald.core.schemas import CamelModel
from herald.notifications.schemas import EmailTracking, InAppTracking


class SignupIn(CamelModel):
    username: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    email: EmailStr
    password: str = Field(min_length=8, max_length=256)


class UserOut(CamelModel):
    user_id: int
    username: str
    email: str
    email_verified: bool
    created_at: datetime


class SignupOut(UserOut):
    welcome_email: EmailTracking


class LoginIn(CamelModel):
    email: str | None = Field(None, max_length=320)
    username: str | None = Field(None, max_length=64)
    password: str = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_identifier(self) -> LoginIn:
        if not (self.email or self.username):
            raise ValueError("give email or username")
        return self

    @property
    def identifier(self) -> str:
        return (self.email or self.username or "").strip().lower()


class LoginOut(CamelModel):
    login_id: int
    user_id: int
    username: str
    email: str
    login_successful: bool
    session_token: str
    session_expires_at: datetime
    created_at: datetime
    login_alert_email: EmailTracking
    login_in_app_notification: InAppTracking
