"""Many deadlines on one timer: what each idle socket would otherwise keep a timer for.

A timer per socket (`loop.call_later`) costs 500-800 bytes of every idle socket in the API
(the handle, its bound callback and arguments, a copied context); a process holding 10,000
sockets keeps three per socket (Engine.IO's ping, the read watchdog, the session's expiry).
Here the deadlines sit in a heap, and one timer is armed for the earliest. asyncio has nothing
like this; the standard library's `sched` blocks its thread, and a scheduler such as
APScheduler keeps a job object (trigger, store entry) per deadline, heavier than the timer it
would replace; hence these few lines.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """Calls `expire(key)` once the deadline set for `key` passes. Setting a key again moves
    its deadline; `cancel` forgets it. Call from the event loop's thread."""

    def __init__(self, expire: Callable[[K], None]) -> None:
        self._expire = expire
        self._due: dict[K, float] = {}  # key -> loop time
        self._heap: list[tuple[float, int, K]] = []  # (loop time, tie-break, key), stale ones too
        self._stale = 0
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: K, delay: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        if key in self._due:
            self._stale += 1
        self._due[key] = when
        self._count += 1
        heapq.heappush(self._heap, (when, self._count, key))
        if when < self._timer_at:
            self._arm(loop, when)
        self._compact()

    def cancel(self, key: K) -> None:
        if self._due.pop(key, None) is not None:
            self._stale += 1
            self._compact()

    def _compact(self) -> None:
        # Entries of moved or cancelled deadlines stay in the heap until they come up; a
        # socket usually goes long before its session would expire, so rebuild once they
        # outnumber the live ones.
        if self._stale > 64 and self._stale > len(self._due):
            self._heap = [(when, n, key) for n, (key, when) in enumerate(self._due.items())]
            heapq.heapify(self._heap)
            self._stale = 0

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = loop.call_at(when, self._fire), when

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer, self._timer_at = None, math.inf
        now = loop.time()
        # `self._heap` each time round: an `expire` that sets a deadline may rebuild it.
        while self._heap:
            when, _, key = self._heap[0]
            if self._due.get(key) != when:  # moved or cancelled since
                heapq.heappop(self._heap)
                self._stale = max(0, self._stale - 1)
            elif when <= now:
                heapq.heappop(self._heap)
                del self._due[key]
                self._expire(key)
            else:
                break
        if self._heap and self._heap[0][0] < self._timer_at:
            self._arm(loop, self._heap[0][0])
