"""The preference document and the notification-type declarations, on the wire."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import Field

from herald.core.errors import InvalidField
from herald.core.schemas import CamelInput, CamelModel
from herald.preferences.models import ANY
from herald.preferences.rules import CHANNELS

TYPE_PATTERN = r"^[a-z][a-z0-9_.-]*$"  # as the trigger's `type`
TYPE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")  # TYPE_PATTERN with its length
MAX_TYPES = 200

TypeSwitch = bool | dict[str, bool | None]


class PreferencesIn(CamelInput):
    """What to change; a switch left out keeps its value, `null` removes it (the default, on,
    or the less specific switch applies again)."""

    channels: dict[str, bool | None] = Field(
        default_factory=dict, description='e.g. {"email": false}: every type by that channel'
    )
    types: dict[str, TypeSwitch | None] = Field(
        default_factory=dict,
        description='e.g. {"promo": false} (every channel), {"digest.weekly": {"email": false}} '
        '(one channel), {"news": {"*": false, "inapp": true}} (all but one)',
    )

    def switches(self) -> tuple[dict[tuple[str, str], bool | None], set[str]]:
        """The named switches, and the types given as a whole (true/false), whose per-channel
        switches that replaces. 422 naming the first field that is not a channel or type."""
        if len(self.types) > MAX_TYPES:
            raise InvalidField("types", f"at most {MAX_TYPES} types per request")
        named: dict[tuple[str, str], bool | None] = {}
        for channel, on in self.channels.items():
            named[(ANY, _channel(channel, f"channels.{channel}"))] = on
        whole: set[str] = set()
        for kind, value in self.types.items():
            if not TYPE.fullmatch(kind):
                raise InvalidField(f"types.{kind}", "a type is 1-32 of a-z, 0-9, _ . - (a-z first)")
            if isinstance(value, dict):
                for channel, on in value.items():
                    field = f"types.{kind}.{channel}"
                    named[(kind, channel if channel == ANY else _channel(channel, field))] = on
            else:
                named[(kind, ANY)] = value
                whole.add(kind)
        return named, whole


def _channel(name: str, field: str) -> str:
    if name not in CHANNELS:
        raise InvalidField(field, f"unknown channel {name!r}: one of {', '.join(CHANNELS)}")
    return name


class PreferencesOut(CamelModel):
    subscriber_id: str
    channels: dict[str, bool] = Field(description="the channel switches that are set")
    types: dict[str, bool | dict[str, bool]] = Field(
        description="per type: true/false for every channel, or per channel (`*`: the rest)"
    )


class TypeIn(CamelInput):
    critical: bool = Field(
        description="delivered whatever the recipient's preferences; no unsubscribe link"
    )


class TypeOut(CamelModel):
    type: str
    critical: bool
    declared: bool = Field(description="false: Herald's default for this type, never declared")
    updated_at: datetime | None = None


class TypeList(CamelModel):
    items: list[TypeOut]
