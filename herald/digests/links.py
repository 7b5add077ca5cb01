"""What an email notification's record says about digests: the digest a held or carried email
belongs to (and the email that delivered it), or what a digest email carried."""

from __future__ import annotations

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.core.schemas import CamelModel
from herald.digests.models import Digest, DigestStatus
from herald.notifications.models import EmailNotification, Status


class DigestLink(CamelModel):
    id: int | None = Field(description="the digest (null while held: bound when it closes)")
    status: str
    email_id: int | None = Field(description="the digest email that delivered it")


async def digest_of(session: AsyncSession, n: EmailNotification) -> DigestLink | None:
    """A held or carried email's digest; None for any other email."""
    if n.digest_id is not None:
        d = await session.get(Digest, n.digest_id)
        if d is not None:
            return DigestLink(id=d.id, status=d.status, email_id=d.email_id)
    if n.status == Status.HELD:
        return DigestLink(id=None, status=DigestStatus.OPEN, email_id=None)
    return None


async def carried_by(session: AsyncSession, n: EmailNotification) -> list[int] | None:
    """The ids a digest email carried; None for any other email."""
    digest_id = await session.scalar(select(Digest.id).where(Digest.email_id == n.id))
    if digest_id is None:
        return None
    ids = await session.scalars(
        select(EmailNotification.id)
        .where(EmailNotification.digest_id == digest_id)
        .order_by(EmailNotification.id)
    )
    return list(ids)
