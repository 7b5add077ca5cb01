"""One delivery attempt as telemetry sees it: the worker and channel stages, and the metrics.

The processor makes one `Attempt` per job run and tells it when the attempt started, what the
channel said, and how the attempt ended; this keeps telemetry out of the processor's logic.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bullmq import Job

from herald.delivery.senders import DeliveryResult
from herald.notifications.models import DeliveryState
from herald.telemetry.stages import now_ms

if TYPE_CHECKING:
    from herald.telemetry.service import Telemetry


class Attempt:
    def __init__(self, telemetry: Telemetry | None, job: Job, channel: str, queue: str) -> None:
        self.telemetry = telemetry
        self.channel = channel
        self.queue = queue
        self.telemetry_id: str | None = job.data.get("telemetryId")
        self.begun_ms = now_ms()
        self.begun = time.perf_counter()
        self.send_begun = self.begun
        self.notification_id = int(job.data["notificationId"])
        # Only a job's first run in a tier says how long it waited: a retry also waited out
        # its backoff, which is not the queue's doing.
        ready_ms = (job.timestamp or 0) + (job.delay or 0)
        first_run = job.attemptsMade == 0 and ready_ms > 0
        self.wait = (self.begun_ms - ready_ms) / 1000 if first_run else None

    def started(self, n: DeliveryState) -> None:
        self._stage(
            "worker",
            "worker",
            timestamp=self.begun_ms,
            queue=self.queue,
            attempt=n.attempts,
            waitMs=round(self.wait * 1000, 3) if self.wait is not None else None,
        )
        self.send_begun = time.perf_counter()

    def sent(self, result: DeliveryResult | None, error: str | None = None) -> None:
        """The channel's answer: a result when it took the notification, else the error."""
        seconds = time.perf_counter() - self.send_begun
        if self.telemetry:
            self.telemetry.metrics.observe_send(self.channel, result is not None, seconds)
        detail: dict[str, Any] = {"sendMs": round(seconds * 1000, 3), "queue": self.queue}
        if result is None:
            detail.update(outcome="failed", error=error)
        elif result.method == "smtp":
            detail.update(outcome="smtp accepted", response=result.response)
        else:
            detail.update(outcome="socket acknowledged", socketId=result.socket_id)
        self._stage("channel", f"channel:{self.channel}", **detail)

    def finished(self, outcome: str) -> None:
        """`delivered`, `retry`, `escalated`, `dead-lettered` or `skipped`."""
        if self.telemetry:
            seconds = time.perf_counter() - self.begun
            self.telemetry.metrics.observe_job(self.queue, outcome, seconds, self.wait)

    @property
    def id(self) -> int:  # the notification's: an Attempt is what its stages are about
        return self.notification_id

    def _stage(self, stage: str, component: str, **detail: Any) -> None:
        if self.telemetry is not None:
            self.telemetry.stages.notification(self, stage, component, **detail)
