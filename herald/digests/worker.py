"""The process side of digests: a BullMQ worker for the delayed close jobs, and the sweep.

Every worker process runs both. A close job is taken by one worker; if that worker dies,
BullMQ's stalled-job check hands the job to another, and closing twice is harmless
(herald.digests.service.close). The sweep, every `HERALD_RECONCILE_INTERVAL` seconds, closes
what no job closed in time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bullmq import Job, Worker

from herald.core.config import Settings
from herald.delivery import bullmq_clients
from herald.delivery.queues import DIGESTS_QUEUE
from herald.digests.service import Digests

log = logging.getLogger(__name__)


class DigestWorker:
    def __init__(self, settings: Settings, redis_url: str, digests: Digests) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.digests = digests
        self._worker: Worker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def process(self, job: Job, token: str) -> str:
        return await self.digests.close(int(job.data["digestId"]))

    def start(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "concurrency": s.digest_concurrency,
            "autorun": False,
            "lockDuration": s.job_lock_ms,
            "stalledInterval": s.stalled_interval_ms,
            "maxStalledCount": s.max_stalled_count,
            "runRetryDelay": 1000,
        }
        self._worker = bullmq_clients.worker(DIGESTS_QUEUE, self.process, self.redis_url, options)
        self._tasks = [
            asyncio.create_task(self._worker.run(), name="worker:digests"),
            asyncio.create_task(self._sweep_forever(), name="digests-sweep"),
        ]

    async def _sweep_forever(self) -> None:
        # A flag as well as the cancellation: a cancellation swallowed mid-query (the database
        # clients can) must not keep the sweep, and close(), going.
        while not self._stopping:
            try:
                await self.digests.sweep()
            except Exception as exc:  # the database is away: next round
                log.warning("digests.sweep.error", extra={"error": repr(exc)}, exc_info=True)
            await asyncio.sleep(self.settings.reconcile_interval)

    async def close(self) -> None:
        self._stopping = True
        sweep = self._tasks[1:] if self._tasks else []
        for task in sweep:
            task.cancel()
        if self._worker is not None:
            closing = asyncio.create_task(self._worker.close())
            done, _ = await asyncio.wait({closing}, timeout=self.settings.worker_shutdown_timeout)
            if not done:
                await asyncio.wait({asyncio.create_task(self._worker.close(force=True))}, timeout=5)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._tasks.clear()
