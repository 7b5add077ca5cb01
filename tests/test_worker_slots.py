"""A worker's concurrency bounds the work in flight, not the waiting.

An in-app attempt waits up to HERALD_INAPP_ACK_TIMEOUT for the client's ack; while it waits it
gives its slot back, so a client that never acknowledges does not hold up everybody else's
notifications (with the seed's concurrency of 10, ten such clients used to stall the queue).
"""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import RunningHerald
from tests.realtime_client import RecordingClient
from tests.test_retry_tiers import notify


async def test_an_attempt_waiting_for_its_ack_leaves_its_slot_to_others(
    herald_factory: Any,
) -> None:
    herald: RunningHerald = await herald_factory(inapp_queue_concurrency=1, inapp_ack_timeout=30)
    silent_user, acking_user = await herald.member(), await herald.member()
    silent, acking = RecordingClient(ack=False), RecordingClient(ack=True)
    for client, user in ((silent, silent_user), (acking, acking_user)):
        await client.connect(herald.url)
        await client.authenticate(user["token"])
    try:
        await notify(herald, silent_user, ["inapp"], "never acknowledged")
        await silent.next("notification:new", timeout=10)  # its attempt now waits for an ack
        for n in range(3):
            sent = time.monotonic()
            await notify(herald, acking_user, ["inapp"], f"meanwhile {n}")
            event = await acking.next("notification:new", timeout=10)
            assert event["title"] == f"meanwhile {n}"
            # Far less than the 30 s the silent client's attempt may still wait.
            assert time.monotonic() - sent < 10
    finally:
        await silent.close()
        await acking.close()
