"""Purchases: `POST /api/purchases` (receipt email + in-app), and the buyer's own history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.accounts.deps import CallerDep, CurrentUserDep
from herald.commerce.models import Purchase
from herald.commerce.schemas import PurchaseIn, PurchaseItem, PurchaseOut
from herald.commerce.service import Purchases
from herald.core.errors import NotFound
from herald.core.pagination import Page, fetch_page, page_of
from herald.notifications.tracked import load_tracking
from herald.web.deps import ClientDep, DbDep, PageDep, app_state
from herald.web.errors import errors

router = APIRouter(prefix="/api", tags=["purchases"])
PurchasesDep = Annotated[Purchases, app_state("purchases")]


@router.post("/purchases", status_code=status.HTTP_201_CREATED)
async def create_purchase(
    data: PurchaseIn,
    user: CurrentUserDep,
    purchases: PurchasesDep,
    db: DbDep,
    client: ClientDep,
) -> PurchaseOut:
    """Record a purchase by the signed-in user; sends a receipt email and an in-app
    notification, both tracked on the purchase."""
    purchase = await purchases.record(user, data, client)
    async with db() as session:
        [out] = await _render(session, [purchase])
    return out


@router.get("/purchases")
async def list_purchases(
    db: DbDep,
    caller: CallerDep,
    page: PageDep,
    user_id: Annotated[
        int | None, Query(alias="userId", ge=1, le=2**31 - 1, description="admin only")
    ] = None,
) -> Page[PurchaseOut]:
    """Your purchases, newest first; with the admin token, everyone's (or one user's)."""
    if caller.user is not None:
        caller.ensure_may_see(user_id or caller.user.id)
        user_id = caller.user.id
    query = select(Purchase).order_by(Purchase.id.desc())
    if user_id is not None:
        query = query.where(Purchase.user_id == user_id)
    async with db() as session:
        rows, total = await fetch_page(session, query, page)
        return page_of(await _render(session, rows), page, total)


@router.get("/purchases/{purchaseId}", responses=errors(404))
async def get_purchase(
    purchase_id: Annotated[int, Path(alias="purchaseId", ge=1, le=2**31 - 1)],
    db: DbDep,
    caller: CallerDep,
) -> PurchaseOut:
    """One purchase with its receipt's delivery tracking. Someone else's is a 404."""
    async with db() as session:
        purchase = await session.get(Purchase, purchase_id)
        if purchase is None or not caller.may_see(purchase.user_id):
            raise NotFound(f"no purchase {purchase_id}")
        [out] = await _render(session, [purchase])
    return out


async def _render(session: AsyncSession, purchases: list[Purchase]) -> list[PurchaseOut]:
    tracked = await load_tracking(
        session,
        email_ids=[p.receipt_email_id for p in purchases],
        inapp_ids=[p.inapp_notification_id for p in purchases],
    )
    return [
        PurchaseOut(
            purchase_id=p.id,
            user_id=p.user_id,
            order_reference=p.order_reference,
            items=[PurchaseItem.model_validate(i) for i in p.items],
            currency=p.currency,
            total_amount=p.total_amount,
            status=p.status,
            assigned_server=p.assigned_server,
            created_at=p.created_at,
            receipt_email=tracked.email(p.receipt_email_id),
            purchase_in_app_notification=tracked.inapp(p.inapp_notification_id),
        )
        for p in purchases
    ]
