"""Recording a purchase: the row and its notifications commit together, then are queued."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
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
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from herald.core.config import Settings
    from herald.notifications.unsubscribe import Signer
    from herald.preferences.service import TypeRegistry
    from herald.templates.store import TemplateStore


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:,.2f} {currency}"


@dataclass(eq=False)
class Purchases:
    """Records purchases, with the receipt email and the in-app notice each one sends."""

    settings: Settings
    db: async_sessionmaker[AsyncSession]
    types: TypeRegistry
    templates: TemplateStore
    unsubscribe: Signer
    outbox: skips.Outbox

    async def record(self, user: User, data: PurchaseIn, client: ClientInfo) -> Purchase:
        total = sum(i.quantity * i.unit_amount for i in data.items)
        if total > 10**15:  # BIGINT holds more, but no real basket does; keep sums exact
            raise InvalidField("items", "total amount too large")
        reference = data.order_reference or f"ORD-{secrets.token_hex(5).upper()}"
        lines = "\n".join(
            f"{i.quantity} x {i.name} @ {_money(i.unit_amount, data.currency)}" for i in data.items
        )
        assert user.email is not None  # a signed-up user keeps an address (subscribers.service)
        critical = await self.types.is_critical("purchase")
        skipped: list[tuple[DeliveryState, skips.Blocked]] = []
        async with transaction(self.db) as session:
            receipt = new_email(
                self.settings,
                "purchase",
                to=user.email,
                username=user.username,
                user_id=user.id,
                telemetry_id=client.telemetry_id,
                templates=self.templates,
                locale=user.locale,
                context={
                    "order_reference": reference,
                    "items": lines,
                    "total": f"{total / 100:,.2f}",
                    "currency": data.currency,
                },
                unsubscribe_token=None
                if critical
                else self.unsubscribe.token("purchase", user.external_id, user.email, user.id),
            )
            inapp = new_inapp(
                self.settings,
                "purchase",
                user_id=user.id,
                username=user.username,
                email=user.email,
                title="Purchase confirmed",
                message=f"Order {reference}: {_money(total, data.currency)}.",
                data={"orderReference": reference, "totalAmount": total, "currency": data.currency},
                telemetry_id=client.telemetry_id,
            )
            if not critical:  # the receipt and the in-app notice honour the buyer's preferences
                skipped = await skips.screen(session, user.id, "purchase", [receipt, inapp])
            session.add_all([receipt, inapp])
            await session.flush()
            purchase = Purchase(
                user_id=user.id,
                order_reference=reference,
                items=[i.model_dump(by_alias=True) for i in data.items],
                currency=data.currency,
                total_amount=total,
                status="completed",
                assigned_server=self.settings.effective_server_id,
                receipt_email_id=receipt.id,
                inapp_notification_id=inapp.id,
                created_at=utcnow(),
            )
            session.add(purchase)
        await self.outbox.send([receipt, inapp], skipped)
        return purchase
