"""Every response says which server served it and carries the request's telemetry id."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# At most 64 characters: the id is stored with each notification (`telemetry_id`, 64 wide).
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
# Told of each finished request: its scope, id, arrival (epoch seconds), seconds in the app and
# the status the client got (herald.telemetry.requests.record_request is one).
RequestObserver = Callable[[Scope, str, float, float, int], None]


class RequestContext:
    """Gives every request its telemetry id (the caller's or HAProxy's `X-Request-ID`, else a
    new one), and hands the finished request to its observer (telemetry: metrics, `server`
    stage)."""

    def __init__(
        self, app: ASGIApp, server_id: str, observe: RequestObserver | None = None
    ) -> None:
        self.app = app
        self.server_id = server_id.encode()
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived, begun = time.time(), time.perf_counter()
        supplied = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied if _SAFE_ID.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client sees if the app fails before answering

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-served-by", self.server_id))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if self.observe is not None:
                self.observe(scope, request_id, arrived, time.perf_counter() - begun, status)


class BodySizeLimit:
    """Answer 413 to a request whose body is larger than `max_bytes`, before anything reads it.

    A declared Content-Length is checked up front; a chunked body is counted as it arrives, and
    once it runs over, the client gets the 413 and the endpoint sees a disconnect. What the
    client is still sending is read and dropped first (up to a bound): the server can't read
    after answering, and closing on unread data resets the connection, so the client would
    never see the 413.
    """

    DRAIN_FACTOR = 8

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._drain(receive, more=True)
            await self._too_large(send)
            return
        received = 0
        answered = False

        async def counting_receive() -> Message:
            nonlocal received, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    answered = True
                    await self._drain(receive, message.get("more_body", False))
                    await self._too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not answered:  # after our 413, whatever the endpoint says goes nowhere
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _drain(self, receive: Receive, more: bool) -> None:
        budget = self.max_bytes * self.DRAIN_FACTOR
        while more and budget > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            more = message.get("more_body", False)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "payload_too_large",
                    "message": f"request body larger than {self.max_bytes} bytes",
                    "details": {"maxBytes": self.max_bytes},
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
