"""The cyclic garbage collector, set for a long-running server process.

CPython's collector looks at its youngest generation every 700 net allocations of container
objects and, now and then, walks every live object of the process. A Herald server's heap is
large and long-lived (the modules, the ORM's and the web framework's tables, a few hundred
objects per connected socket): measured with `gc.callbacks` under `herald bench`, the API
process spent 9 % of its CPU in the collector at 300 in-app notifications/s and 18 % while
10,000 sockets connected, in pauses of up to 0.9 s (docs/benchmarks.md). Two settings that
CPython offers for this bring that down without turning the collector off:

- what start-up built is frozen (`gc.freeze`): it lives as long as the process, and no
  collection walks it again;
- the youngest generation is collected every `YOUNG` allocations: the cycles a request or a job
  leaves behind die there instead of being promoted and walked again by older collections,
  which run correspondingly less often.

Only the entry points of long-running processes call `settle` (`herald serve`, `herald api`,
`herald worker`, the bench's load generators): a process that starts several Heralds, such as
the test suite, keeps the defaults.
"""

from __future__ import annotations

import gc

YOUNG = 20_000  # young collections stay short: a few ms each
OLDER = 20  # collections of a generation before the next one up is collected too


def settle() -> None:
    """Freeze the start-up heap and collect less often; call once the process has started."""
    gc.collect()  # what start-up left as garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(YOUNG, OLDER, OLDER)
