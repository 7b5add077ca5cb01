"""Templates an operator stored: one per notification type and locale."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base, utcnow


class StoredTemplate(Base):
    """Overrides the built-in body of `type` for recipients whose locale chain reaches
    `locale` (canonical BCP 47 casing: `de-CH`). `html` is the body inside Herald's layout."""

    __tablename__ = "templates"

    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    locale: Mapped[str] = mapped_column(String(35), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(120))
