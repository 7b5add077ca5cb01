from __future__ import annotations

from datetime import datetime

from pydantic import Field

from herald.core.schemas import CamelInput, CamelModel
from herald.notifications.schemas import EmailTracking, InAppTracking

MAX_AMOUNT = 10**12  # minor units: ten billion in a two-decimal currency


class PurchaseItem(CamelInput):
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=1, le=10_000)
    unit_amount: int = Field(
        ge=0, le=MAX_AMOUNT, description="price of one, in the currency's minor unit (cents)"
    )


class PurchaseIn(CamelInput):
    items: list[PurchaseItem] = Field(min_length=1, max_length=100)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    order_reference: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="your order number; one is made if you leave it out",
    )


class PurchaseOut(CamelModel):
    purchase_id: int
    user_id: int
    order_reference: str
    items: list[PurchaseItem]
    currency: str
    total_amount: int = Field(description="sum of quantity x unitAmount, in minor units")
    status: str
    assigned_server: str | None
    created_at: datetime
    receipt_email: EmailTracking | None
    purchase_in_app_notification: InAppTracking | None
