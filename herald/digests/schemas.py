"""Digests on the wire: a type's rule, and one digest with what it carried."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from herald.core.schemas import CamelInput, CamelModel

TYPE_PATTERN = r"^[a-z][a-z0-9_.-]*$"  # as the trigger's `type`


class DigestRuleIn(CamelInput):
    """Exactly one of `window` and `dailyAt`."""

    window: str | None = Field(
        None,
        max_length=16,
        examples=["10m"],
        description='from the first notification: "90s", "10m", "2h" or "1d" (31 days at most)',
    )
    daily_at: str | None = Field(
        None,
        max_length=5,
        examples=["08:00"],
        description='"HH:MM" in the subscriber\'s time zone (their `timezone`, else UTC)',
    )
    group_by: str | None = Field(
        None,
        max_length=200,
        examples=["data.projectId"],
        description="a key of the trigger's data: one digest per value",
    )


class DigestRuleOut(CamelModel):
    type: str
    window: str | None
    daily_at: str | None
    group_by: str | None


class DigestOut(CamelModel):
    id: int
    type: str
    user_id: int
    subscriber_id: str | None
    group_key: str
    status: str = Field(description="open, sent (its email carries `carried`) or empty")
    created_at: datetime
    closes_at: datetime
    closed_at: datetime | None
    email_id: int | None = Field(description="the email that delivered it")
    carried: list[int] = Field(description="the email notifications it carried")
