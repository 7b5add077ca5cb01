"""BullMQ workers for every tier that drains by itself (all but the dead-letter queues)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from bullmq import Worker

from herald.core.config import Settings
from herald.delivery import bullmq_clients
from herald.delivery.processor import Processor
from herald.notifications.ladder import ladder
from herald.notifications.models import Channel

log = logging.getLogger(__name__)


class DeliveryWorkers:
    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        processor: Processor,
        channels: Iterable[Channel] = tuple(Channel),
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.processor = processor
        self.channels = tuple(channels)
        self.workers: list[Worker] = []
        self._runs: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for channel in self.channels:
            for tier in ladder(self.settings, channel):
                if tier.is_dead_letter:
                    continue
                worker = bullmq_clients.worker(
                    tier.queue, self.processor, self.redis_url, self._options(tier.concurrency)
                )
                worker.on("error", _log_error(tier.queue))
                self.workers.append(worker)
                # We run it ourselves (autorun off) so that shutdown can always end it.
                self._runs.append(asyncio.create_task(worker.run(), name=f"worker:{tier.queue}"))
        log.info("delivery.workers.started", extra={"queues": [w.name for w in self.workers]})

    def _options(self, concurrency: int) -> Any:
        s = self.settings
        return {
            "concurrency": concurrency,
            "autorun": False,
            "lockDuration": s.job_lock_ms,
            "stalledInterval": s.stalled_interval_ms,
            "maxStalledCount": s.max_stalled_count,
            # After losing Redis, try again soon rather than BullMQ's default 15 s.
            "runRetryDelay": 1000,
        }

    async def close(self) -> None:
        """Let in-flight jobs finish for a while; then stop anyway. A job cut short is still
        active in Redis, and the stalled-job check hands it to another worker."""
        await asyncio.gather(*(self._close(w) for w in self.workers))
        for run in self._runs:
            run.cancel()  # a run still trying to reach Redis would otherwise never end
        await asyncio.gather(*self._runs, return_exceptions=True)
        self.workers.clear()
        self._runs.clear()

    async def _close(self, worker: Worker) -> None:
        # Not wait_for: bullmq's close() shields itself from cancellation, so a wait_for that
        # times out would then wait for it forever. We wait, then force, then walk away.
        graceful = _background(worker.close())
        done, _ = await asyncio.wait({graceful}, timeout=self.settings.worker_shutdown_timeout)
        if not done:
            log.warning("delivery.worker.forced_close", extra={"queue": worker.name})
            await asyncio.wait({_background(worker.close(force=True))}, timeout=5)


def _background(closing: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.create_task(closing)
    task.add_done_callback(_log_failure)
    return task


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception():
        log.warning("delivery.worker.close_failed", extra={"error": repr(task.exception())})


def _log_error(queue: str) -> Callable[..., None]:
    def handler(error: Exception, *_: object) -> None:
        log.error("delivery.worker.error", extra={"queue": queue, "error": repr(error)})

    return handler
