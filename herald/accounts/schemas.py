from __future__ import annotations

from datetime import datetime

from pydantic import EmailStr, Field, model_validator

from herald.core.schemas import CamelInput, CamelModel
from herald.notifications.schemas import EmailTracking, InAppTracking


class SignupIn(CamelInput):
    username: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    email: EmailStr
    password: str = Field(min_length=8, max_length=256)


class UserOut(CamelModel):
    user_id: int
    username: str | None
    email: str | None
    email_verified: bool
    created_at: datetime
    updated_at: datetime


class SignupOut(UserOut):
    welcome_email: EmailTracking


class LoginIn(CamelInput):
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
    username: str | None
    email: str | None
    login_successful: bool
    session_token: str
    session_expires_at: datetime
    created_at: datetime
    login_alert_email: EmailTracking
    login_in_app_notification: InAppTracking


class WelcomeEmailStatus(UserOut):
    welcome_email: EmailTracking


class VerifyOut(UserOut):
    pass


class SignupStatistics(CamelModel):
    total_users: int
    verified_users: int
    unverified_users: int
    signups_last_24h: int = Field(serialization_alias="signupsLast24h")
    signups_last_7d: int = Field(serialization_alias="signupsLast7d")
    welcome_emails: dict[str, int] = Field(description="welcome emails by delivery status")


class LoginRecordOut(CamelModel):
    login_id: int
    user_id: int | None
    username: str | None
    email: str | None
    login_successful: bool
    failure_reason: str | None
    session_id: int | None
    ip_address: str | None
    user_agent: str | None
    assigned_server: str | None
    created_at: datetime
    login_alert_email: EmailTracking | None
    login_in_app_notification: InAppTracking | None


class FailedLoginAlert(CamelModel):
    login_id: int
    user_id: int | None
    username: str | None
    email: str | None
    created_at: datetime
    login_alert_email: EmailTracking


class SessionIn(LoginIn):
    pass


class SessionCreatedOut(CamelModel):
    session_id: int
    user_id: int
    username: str | None
    session_token: str = Field(description="Bearer token; shown only here, stored only hashed")
    created_at: datetime
    expires_at: datetime


class SessionOut(CamelModel):
    session_id: int
    user_id: int
    created_at: datetime
    expires_at: datetime
    ip_address: str | None
    user_agent: str | None
    current: bool = Field(description="the session whose token made this request")


class UserSessions(CamelModel):
    user_id: int
    username: str | None
    sessions: list[SessionOut]


class LogoutOut(CamelModel):
    sessions_ended: int


class ResetRequestIn(CamelInput):
    email: EmailStr


class ResetRequestOut(CamelModel):
    message: str


class ResetConfirmIn(CamelInput):
    token: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


class ResetConfirmOut(CamelModel):
    user_id: int
    sessions_ended: int
