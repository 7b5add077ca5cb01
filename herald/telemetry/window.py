"""Rolling one-second bins per component: rates, error rates and latency percentiles.

Prometheus histograms are for Prometheus; the dashboard and the JSON summary need p50/p95/p99
now, across every process of the cluster. So each process also keeps, per component, one bin
per second for the last minute. A bin counts observations and errors and sorts latencies into
fixed log-spaced buckets (each 10% wider than the last), so bins from different seconds and
different processes merge by adding counts, and a percentile read from merged buckets is off by
at most one bucket's width (10%).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Bucket upper bounds in milliseconds: 0.05 ms ... ~2 min, each 1.1x the previous.
BOUNDS: tuple[float, ...] = tuple(0.05 * 1.1**i for i in range(int(math.log(2.4e6, 1.1)) + 2))


@dataclass
class Bin:
    count: int = 0
    errors: int = 0
    total_ms: float = 0.0
    buckets: dict[int, int] = field(default_factory=dict)  # bucket index -> observations

    def add(self, ms: float, ok: bool) -> None:
        self.count += 1
        self.total_ms += ms
        if not ok:
            self.errors += 1
        index = bisect.bisect_left(BOUNDS, ms)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def merge(self, other: Bin) -> None:
        self.count += other.count
        self.errors += other.errors
        self.total_ms += other.total_ms
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n

    def percentile(self, q: float) -> float | None:
        """The q-quantile (0..1) in milliseconds, interpolated inside its bucket."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for index in sorted(self.buckets):
            n = self.buckets[index]
            if seen + n >= rank:
                upper = BOUNDS[min(index, len(BOUNDS) - 1)]
                lower = BOUNDS[index - 1] if index > 0 else 0.0
                return round(lower + (upper - lower) * (rank - seen) / n, 3)
            seen += n
        return BOUNDS[-1]

    def summary(self, seconds: float) -> dict[str, Any]:
        """What the dashboard shows for this component over `seconds`."""
        ok = self.count - self.errors
        return {
            "count": self.count,
            "errors": self.errors,
            "perSecond": round(self.count / seconds, 3) if seconds > 0 else 0.0,
            "successRate": round(ok / self.count, 4) if self.count else None,
            "errorRate": round(self.errors / self.count, 4) if self.count else None,
            "meanMs": round(self.total_ms / self.count, 3) if self.count else None,
            "p50Ms": self.percentile(0.50),
            "p95Ms": self.percentile(0.95),
            "p99Ms": self.percentile(0.99),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "totalMs": round(self.total_ms, 3),
            "buckets": {str(k): v for k, v in self.buckets.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bin:
        return cls(
            count=int(data["count"]),
            errors=int(data["errors"]),
            total_ms=float(data["totalMs"]),
            buckets={int(k): int(v) for k, v in data["buckets"].items()},
        )


def merged(bins: list[dict[str, Bin]]) -> dict[str, Bin]:
    """Component-wise sum of several {component: Bin} maps."""
    total: dict[str, Bin] = {}
    for by_component in bins:
        for component, b in by_component.items():
            total.setdefault(component, Bin()).merge(b)
    return total


class Window:
    """The last `seconds` one-second bins of every component, in this process."""

    def __init__(self, seconds: int = 60) -> None:
        self.seconds = seconds
        self._bins: deque[tuple[int, dict[str, Bin]]] = deque()
        self.started = time.time()

    def observe(self, component: str, ms: float, ok: bool = True) -> None:
        second = int(time.time())
        if not self._bins or self._bins[-1][0] != second:
            self._bins.append((second, {}))
            while self._bins[0][0] <= second - self.seconds:
                self._bins.popleft()
        by_component = self._bins[-1][1]
        b = by_component.get(component)
        if b is None:
            b = by_component[component] = Bin()
        b.add(ms, ok)

    def second(self, second: int) -> dict[str, Bin]:
        """The bins of one (finished) epoch second; empty if nothing happened then."""
        for s, by_component in reversed(self._bins):
            if s == second:
                return by_component
            if s < second:
                break
        return {}

    def last(self, seconds: int, now: float | None = None) -> dict[str, Bin]:
        """All components merged over the `seconds` finished seconds before `now`."""
        end = int(now if now is not None else time.time())
        return merged([b for s, b in self._bins if end - seconds <= s < end])

    def covered(self, seconds: int, now: float | None = None) -> float:
        """How many of those seconds this process was running (rates divide by this)."""
        now = now if now is not None else time.time()
        return max(1.0, min(float(seconds), int(now) - self.started))
