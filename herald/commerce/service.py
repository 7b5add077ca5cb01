"""Recording a purchase: the row and its notifications commit together, then are queued."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from herald.accounts.models import User
from herald.commerce.models import Purchase
from herald.commerce.schemas import PurchaseIn
from herald.core.client import ClientInfo
from herald.core.db import transaction, utcnow
from herald.core.errors import InvalidField
from herald.notifications.models import DeliveryState
from herald.notifications.service import new_email, new_inapp
from herald.preferences import skips

if TYPE_CHECKING:
    from herald.runtime import Herald


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:,.2f} {currency}"


async def record_purchase(
    herald: Herald, user: User, data: PurchaseIn, client: ClientInfo
) -> Purchase:
    total = sum(i.quantity * i.unit_amount for i in data.items)
    if total > 10**15:  # BIGINT holds more, but no real basket does; keep sums exact
        raise InvalidField("items", "total amount too large")
    reference = data.order_reference or f"ORD-{secrets.token_hex(5).upper()}"
    lines = "\n".join(
        f"{i.quantity} x {i.name} @ {_money(i.unit_amount, data.currency)}" for i in data.items
    )
    assert user.email is not None  # a signed-up user keeps an address (subscribers.service)
    critical = await herald.types.is_critical("purchase")
    skipped: list[tuple[DeliveryState, skips.Blocked]] = []
    async with transaction(herald.db) as session:
        receipt = new_email(
            herald.settings, "purchase", to=user.email, username=user.username, user_id=user.id,
            telemetry_id=client.telemetry_id, templates=herald.templates, locale=user.locale,
            context={"order_reference": reference, "items": lines,
                     "total": f"{total / 100:,.2f}", "currency": data.currency},
            unsubscribe_token=None if critical else herald.unsubscribe.token(
                "purchase", user.external_id, user.email, user.id
            ),
        )  # fmt: skip
        inapp = new_inapp(
            herald.settings, "purchase", user_id=user.id, username=user.username,
            email=user.email, title="Purchase confirmed",
            message=f"Order {reference}: {_money(total, data.currency)}.",
            data={"orderReference": reference, "totalAmount": total, "currency": data.currency},
            telemetry_id=client.telemetry_id,
        )  # fmt: skip
        if not critical:  # the receipt and the in-app notice honour the buyer's preferences
            skipped = await skips.screen(session, user.id, "purchase", [receipt, inapp])
        session.add_all([receipt, inapp])
        await session.flush()
        purchase = Purchase(
            user_id=user.id, order_reference=reference,
            items=[i.model_dump(by_alias=True) for i in data.items], currency=data.currency,
            total_amount=total, status="completed",
            assigned_server=herald.settings.effective_server_id,
            receipt_email_id=receipt.id, inapp_notification_id=inapp.id, created_at=utcnow(),
        )  # fmt: skip
        session.add(purchase)
    await skips.dispatch(herald, [receipt, inapp], skipped)
    return purchase
