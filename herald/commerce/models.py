"""A purchase and the two notifications it sends (a receipt email and an in-app one)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ColumnElement, ForeignKey, String, exists
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base


class Purchase(Base):
    __tablename__ = "purchases"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    order_reference: Mapped[str] = mapped_column(String(64))
    # [{"name", "quantity", "unitAmount"}]; amounts in the currency's minor unit (cents).
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="completed")
    assigned_server: Mapped[str | None] = mapped_column(String(128))
    receipt_email_id: Mapped[int | None] = mapped_column(ForeignKey("email_notifications.id"))
    inapp_notification_id: Mapped[int | None] = mapped_column(ForeignKey("inapp_notifications.id"))
    created_at: Mapped[datetime]


def purchases_of(user_id: int) -> ColumnElement[bool]:
    """True while the user has purchases (herald.subscribers.service.SharedHistory)."""
    return exists().where(Purchase.user_id == user_id)
