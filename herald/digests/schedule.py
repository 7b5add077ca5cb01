"""When a digest closes, and which group an email belongs to: pure functions.

`next_daily` works on the subscriber's wall clock with `zoneinfo`, so a daily digest goes out
at 08:00 local on both sides of a daylight-saving change (23 or 25 hours apart, not 24). A
local time that does not exist that day (inside the spring-forward gap) is taken as the moment
the clock jumps over it would have shown it: fold=0 reads it with the offset before the jump,
so 02:30 in a 02:00→03:00 gap is 03:30 local. A time that happens twice (autumn) is its first
occurrence.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

WINDOW = re.compile(r"^([1-9][0-9]{0,6})(s|m|h|d)$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_SECONDS = 31 * 86400
DAILY_AT = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
GROUP_BY = re.compile(r"^data(\.[A-Za-z0-9_-]{1,64}){1,8}$")
MAX_GROUP_KEY = 255


def parse_window(value: str) -> int:
    """ "90s", "10m", "2h", "1d" in seconds; ValueError naming the shape otherwise."""
    found = WINDOW.fullmatch(value)
    if found is None:
        raise ValueError('a number and a unit: "90s", "10m", "2h" or "1d"')
    seconds = int(found[1]) * UNIT_SECONDS[found[2]]
    if seconds > MAX_WINDOW_SECONDS:
        raise ValueError("at most 31 days")
    return seconds


def format_window(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds % UNIT_SECONDS[unit] == 0:
            return f"{seconds // UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def parse_daily_at(value: str) -> time:
    found = DAILY_AT.fullmatch(value)
    if found is None:
        raise ValueError('a 24-hour local time, "HH:MM" (e.g. "08:00")')
    return time(int(found[1]), int(found[2]))


def zone(name: str | None) -> tzinfo:
    """The subscriber's time zone; UTC when unset or unknown to this machine."""
    if not name:
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def next_daily(now: datetime, at: time, tz: tzinfo) -> datetime:
    """The first moment after `now` (aware) when the clock in `tz` shows `at`, in UTC."""
    today = now.astimezone(tz).date()
    for days in range(3):  # today's may have passed; tomorrow's always comes
        local = datetime.combine(today + timedelta(days=days), at, tzinfo=tz)
        moment = local.astimezone(UTC)
        if moment > now:
            return moment
    raise AssertionError("unreachable: tomorrow's time is always after now")


def group_key(group_by: str | None, data: dict[str, Any]) -> str:
    """The value at `group_by` ("data.projectId") in the trigger's data, as text; "" when
    there is no grouping or the value is missing."""
    if not group_by:
        return ""
    value: Any = data
    for part in group_by.split(".")[1:]:
        if not isinstance(value, dict) or part not in value:
            return ""
        value = value[part]
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:MAX_GROUP_KEY]
