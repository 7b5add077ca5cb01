"""The queues, as an endpoint dependency."""

from __future__ import annotations

from typing import Annotated

from herald.delivery.queues import Queues
from herald.web.deps import app_state

QueuesDep = Annotated[Queues, app_state("queues")]
