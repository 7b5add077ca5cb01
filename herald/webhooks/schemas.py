"""Webhook endpoints on the wire. The signing secret appears once, in the answer that made it
(or rotated it)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from herald.core.schemas import CamelInput, CamelModel
from herald.webhooks.events import EVENT_TYPES
from herald.webhooks.registry import ALL_EVENTS

EVENTS_HELP = "any of " + ", ".join(EVENT_TYPES) + f"; or {ALL_EVENTS!r} for all"


class WebhookIn(CamelInput):
    url: str = Field(min_length=1, max_length=2048, description="an http:// or https:// URL")
    events: list[str] = Field(
        min_length=1, max_length=len(EVENT_TYPES) + 1, description=EVENTS_HELP
    )
    description: str | None = Field(None, max_length=500)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError (a 422) for a port out of range
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if any(c.isspace() for c in url):
            raise ValueError("must not contain spaces")
        return url

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: list[str]) -> list[str]:
        unknown = [e for e in events if e != ALL_EVENTS and e not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}: {EVENTS_HELP}")
        return sorted(set(events))


class WebhookOut(CamelModel):
    id: int
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookOut):
    secret: str = Field(
        description="`whsec_<base64>`, shown this once: verify every delivery with it "
        "(Standard Webhooks)"
    )


class WebhookList(CamelModel):
    items: list[WebhookOut]
