"""Which switch decides whether a notification of a type goes out on a channel.

Pure functions over a subscriber's switches, so the trigger decides without a query: the
switches come with its recipient lookup. Critical types are decided before this is asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from herald.preferences.models import ANY

# The channels a subscriber can switch; the names the API and the trigger use.
CHANNELS = ("email", "inapp")
# Critical unless the application declares otherwise (PUT /api/types/{type}): the login alert,
# the password reset, and the signup's address verification, which the account needs.
DEFAULT_CRITICAL = frozenset({"login", "reset_password", "signup"})

Switches = Mapping[tuple[str, str], bool]  # (type or "*", channel or "*") -> on


class Blocked(NamedTuple):
    reason: str  # for the record: "preferences: email off for type promo"
    switch: str  # for metrics, few values: type_channel, type, channel, address


def blocked(switches: Switches | None, kind: str, channel: str) -> Blocked | None:
    """Why `kind` may not go out on `channel`, or None when it may. The most specific switch
    decides: the type on this channel, then the type on every channel, then the channel."""
    if not switches:
        return None
    for key, switch, what in (
        ((kind, channel), "type_channel", f"{channel} off for type {kind}"),
        ((kind, ANY), "type", f"type {kind} off"),
        ((ANY, channel), "channel", f"{channel} off"),
    ):
        enabled = switches.get(key)
        if enabled is not None:
            return None if enabled else Blocked(f"preferences: {what}", switch)
    return None


def address_blocked(kind: str) -> Blocked:
    return Blocked(f"preferences: address unsubscribed from type {kind}", "address")
