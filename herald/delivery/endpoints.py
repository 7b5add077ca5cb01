"""Operations on the ladder: dead-letter review and queue counts (admin token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field, model_validator

from herald.apikeys.deps import AdminDep
from herald.core.errors import NotFound
from herald.core.pagination import Page
from herald.core.schemas import CamelInput
from herald.delivery import dead_letters
from herald.delivery.dead_letters import DeadLetters
from herald.delivery.deps import QueuesDep
from herald.notifications.models import MODEL_OF, Channel
from herald.notifications.schemas import EmailTracking, InAppTracking, WebhookTracking, tracking
from herald.web.deps import DbDep, PageDep, app_state

router = APIRouter(prefix="/api/ops", tags=["operations"], dependencies=[AdminDep])
DeadLettersDep = Annotated[DeadLetters, app_state("dead_letters")]


NotificationId = Annotated[int, Field(ge=1, le=2**31 - 1)]
KIND_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"


class Selection(CamelInput):
    ids: list[NotificationId] | None = Field(None, max_length=10_000)
    all: bool = False
    type: str | None = Field(None, pattern=KIND_PATTERN)

    @model_validator(mode="after")
    def _ids_or_all(self) -> Selection:
        if not self.ids and not self.all:
            raise ValueError("give ids, or all=true")
        return self

    @property
    def chosen_ids(self) -> list[int] | None:
        return None if self.all else self.ids


class ReplayIn(Selection):
    note: str | None = Field(None, max_length=500)


class DiscardIn(Selection):
    reason: str = Field(min_length=1, max_length=500)


@router.get("/queues")
async def queue_counts(queues: QueuesDep) -> dict[str, Any]:
    """Jobs per queue and state: every tier of both ladders, dead-letter queues included."""
    return {"queues": await queues.counts()}


@router.get("/dlq/{channel}")
async def list_dead_letters(
    channel: Channel,
    letters: DeadLettersDep,
    page: PageDep,
    type: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
) -> Page[dead_letters.DeadLetter]:
    """Dead letters of one channel, newest first; `type` narrows to one notification type."""
    return await letters.page(channel, page, kind=type)


@router.get(
    "/dlq/{channel}/{notificationId}",
    response_model=EmailTracking | InAppTracking | WebhookTracking,
    responses={404: {"description": "No such notification"}},
)
async def show_dead_letter(
    channel: Channel,
    notification_id: Annotated[int, Path(alias="notificationId", ge=1, le=2**31 - 1)],
    db: DbDep,
) -> EmailTracking | InAppTracking | WebhookTracking:
    """A notification's whole story: every attempt and escalation."""
    async with db() as session:
        n = await session.get(MODEL_OF[channel], notification_id)
        if n is None:
            raise NotFound(f"no {channel.value} notification {notification_id}")
        return (await tracking(session, [n]))[(channel, n.id)]


@router.post("/dlq/{channel}/replay")
async def replay_dead_letters(
    channel: Channel, body: ReplayIn, letters: DeadLettersDep
) -> dict[str, Any]:
    replayed = await letters.replay(channel, body.chosen_ids, kind=body.type, note=body.note)
    return {"replayed": replayed, "count": len(replayed)}


@router.post("/dlq/{channel}/discard")
async def discard_dead_letters(
    channel: Channel, body: DiscardIn, letters: DeadLettersDep
) -> dict[str, Any]:
    discarded = await letters.discard(channel, body.chosen_ids, reason=body.reason, kind=body.type)
    return {"discarded": discarded, "count": len(discarded)}
