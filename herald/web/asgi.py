"""Plain ASGI helpers for the layers that answer before FastAPI does (the idempotency layer, the
trigger's fast path): read a request's body, hand it on, answer with bytes."""

from __future__ import annotations

from starlette.types import Message, Receive, Send


async def read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and False if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def replay_receive(body: bytes, receive: Receive) -> Receive:
    """Hand the next app the body already read; after that, the client's real events."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer `body` (JSON unless `extra` names another content type)."""
    headers = [(b"content-length", str(len(body)).encode())]
    names = {k.lower() for k, _ in extra or []}
    if b"content-type" not in names:
        headers.append((b"content-type", b"application/json"))
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})
