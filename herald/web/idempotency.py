"""`Idempotency-Key` on POST: a repeat within the TTL gets the first answer, not a second effect.

The record lives in Redis under a hash of (key, method, path, caller), so two callers can't see
each other's answers. It is claimed with SET NX before the endpoint runs, so two copies of one
request arriving together run the endpoint once: the second gets 409 while the first is in
flight, and the first's answer after. A repeat whose body differs is refused (422): the key was
reused for a different request. Answers of 5xx, and of requests refused before they ran
(401, 403, 413, 415, 422, 429), are not kept, so a retry (or the corrected request) runs again.
A kept answer is replayed only while the caller's token is still live.

An answer marked `Cache-Control: no-store` carries credentials (a new session token), and
tokens are only ever stored hashed, so its body is not kept either: a repeat gets 409
`idempotency_key_used` instead of a second session (retry without the key, or with a new one).

A record keeps only what a replay needs, in bytes, compressed: at 40 keyed requests a second
for 24 hours, every byte per record is 3.5 MB of Redis. The first byte says what follows:

    F<fingerprint>                          claimed: the first request is still running
    N<fingerprint>                          answered with credentials, which are not kept
    D<fingerprint><zlib(head "\n" body)>    answered: head is JSON [status, headers]

The fingerprint is the first 16 bytes of the request body's SHA-256 (128 bits tell two bodies
apart); `content-type: application/json`, every answer's but a few, is not stored. A record
written by an earlier Herald (JSON, with the body in base64) is still read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald.web.asgi import read_body, replay_receive, respond

log = logging.getLogger(__name__)

HEADER = b"idempotency-key"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
# How long a claim stays while its request runs; a server that dies mid-request frees the key
# after this long.
IN_FLIGHT_SECONDS = 60
# Answers to requests that never ran (refused before the endpoint did anything: bad input,
# no or wrong credentials, too large, rate limited) are not kept, so the corrected request
# may use the same key, as the payment APIs that made the header common do.
NOT_EXECUTED = frozenset({401, 403, 413, 415, 422, 429})
_KEPT_HEADERS = {b"content-type", b"location", b"retry-after"}
_DEFAULT_TYPE = ("content-type", "application/json")  # what `respond` sends when none is kept
Headers = list[tuple[str, str]]


@dataclass
class Record:
    state: str  # "in-flight" or "done"
    fingerprint: bytes
    kept: bool = True
    status: int = 0
    headers: Headers = field(default_factory=list)
    body: bytes = b""


def fingerprint_of(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()[:16]


def claim_record(fingerprint: bytes) -> bytes:
    return b"F" + fingerprint


def done_record(fingerprint: bytes, status: int, headers: Headers, body: bytes) -> bytes:
    head = json.dumps([status, [h for h in headers if h != _DEFAULT_TYPE]], separators=(",", ":"))
    return b"D" + fingerprint + zlib.compress(head.encode() + b"\n" + body, 9)


def not_kept_record(fingerprint: bytes) -> bytes:
    return b"N" + fingerprint


def parse_record(value: bytes) -> Record:
    kind, fingerprint, rest = value[:1], value[1:17], value[17:]
    if kind == b"F":
        return Record("in-flight", fingerprint)
    if kind == b"N":
        return Record("done", fingerprint, kept=False)
    if kind == b"D":
        head, _, body = zlib.decompress(rest).partition(b"\n")
        status, headers = json.loads(head)
        return Record("done", fingerprint, True, status, [tuple(h) for h in headers], body)
    return _legacy_record(json.loads(value))


def _legacy_record(record: dict[str, Any]) -> Record:
    """A record in the JSON of Herald versions before the compact one."""
    return Record(
        record.get("state", "in-flight"),
        bytes.fromhex(record.get("fingerprint", ""))[:16],
        kept=record.get("kept", True),
        status=record.get("status", 0),
        headers=[tuple(h) for h in record.get("headers", [])],
        body=base64.b64decode(record.get("body", "")),
    )


def _error(status: int, code: str, message: str, field: str | None = None) -> tuple[int, bytes]:
    details = [{"field": field, "message": message}] if field else None
    body = {"error": {"code": code, "message": message, "details": details}}
    return status, json.dumps(body).encode()


# Whether an Authorization header still names a live credential.
CredentialCheck = Callable[[bytes], Awaitable[bool]]


class Idempotency:
    """`redis` must hand back bytes (no `decode_responses`): records are binary."""

    def __init__(
        self,
        app: ASGIApp,
        redis: aioredis.Redis,
        ttl_seconds: int,
        credential_live: CredentialCheck | None = None,
    ) -> None:
        self.app = app
        self.redis = redis
        self.ttl = ttl_seconds
        self.credential_live = credential_live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if scope["type"] != "http" or scope["method"] != "POST" or HEADER not in headers:
            await self.app(scope, receive, send)
            return
        key = headers[HEADER].decode("latin-1")
        if not KEY_PATTERN.match(key):
            await respond(
                send,
                *_error(
                    422,
                    "validation_error",
                    "invalid Idempotency-Key: 1 to 255 visible ASCII characters",
                    "Idempotency-Key",
                ),
            )
            return
        body, complete = await read_body(receive)
        if not complete:
            return  # the client went away (or the size limit already answered)
        record_key = self._record_key(scope, headers, key)
        fingerprint = fingerprint_of(body)
        claim = claim_record(fingerprint)
        try:
            claimed = await self.redis.set(record_key, claim, nx=True, ex=IN_FLIGHT_SECONDS)
            existing = None if claimed else cast(bytes | None, await self.redis.get(record_key))
        except Exception as exc:
            # Redis down: run the request without the guarantee rather than refuse it; the
            # notification rows are durable in the database either way.
            log.warning("idempotency.unavailable", extra={"error": repr(exc)})
            await self.app(scope, replay_receive(body, receive), send)
            return
        if not claimed:
            if not await self._caller_still_valid(headers):
                await respond(send, *_error(401, "invalid_token", "invalid or expired token"))
                return
            await self._repeat(send, existing, fingerprint)
            return
        await self._run(scope, body, receive, send, record_key, fingerprint)

    def _record_key(self, scope: Scope, headers: dict[bytes, bytes], key: str) -> str:
        # The caller is whoever holds this Authorization header (hashed: it is a secret), or,
        # without one, the client address.
        auth = headers.get(b"authorization")
        client = scope.get("client") or ("unknown", 0)
        caller = hashlib.sha256(auth).hexdigest() if auth else f"addr:{client[0]}"
        path = scope["path"] + ("?" + scope["query_string"].decode("latin-1"))
        identity = "\n".join((caller, scope["method"], path, key))
        return "herald:idempotency:" + hashlib.sha256(identity.encode()).hexdigest()

    async def _caller_still_valid(self, headers: dict[bytes, bytes]) -> bool:
        """A kept answer goes only to a caller whose token still works: one logged out since
        (or whose password was reset) must not read it again."""
        auth = headers.get(b"authorization")
        return auth is None or self.credential_live is None or await self.credential_live(auth)

    async def _repeat(self, send: Send, existing: bytes | None, fingerprint: bytes) -> None:
        # None: the record expired between our SET NX and GET; the request is still running
        # somewhere or just finished, so the in-flight answer is the safe one.
        record = parse_record(existing) if existing else Record("in-flight", fingerprint)
        if record.fingerprint != fingerprint:
            await respond(
                send,
                *_error(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request body",
                    "Idempotency-Key",
                ),
            )
        elif record.state == "done" and not record.kept:
            await respond(
                send,
                *_error(
                    409,
                    "idempotency_key_used",
                    "the first answer to "
                    "this Idempotency-Key carried credentials, which are not kept; "
                    "retry without the key or with a new one",
                ),
            )
        elif record.state != "done":
            await respond(
                send,
                *_error(
                    409,
                    "idempotency_in_flight",
                    "a request with this Idempotency-Key is still running; retry shortly",
                ),
                extra=[(b"retry-after", b"1")],
            )
        else:
            kept = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in record.headers]
            kept.append((b"idempotent-replayed", b"true"))
            await respond(send, record.status, record.body, extra=kept)

    async def _run(
        self,
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
        record_key: str,
        fingerprint: bytes,
    ) -> None:
        status = 500
        no_store = False
        kept: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def recording_send(message: Message) -> None:
            nonlocal status, no_store
            if message["type"] == "http.response.start":
                status = message["status"]
                no_store = any(
                    k.lower() == b"cache-control" and b"no-store" in v.lower()
                    for k, v in message.get("headers", [])
                )
                kept.extend(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.lower() in _KEPT_HEADERS
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Store the answer before the client can read its end: a client that
                    # repeats the request the moment it has the first answer must be given
                    # that answer, not `idempotency_in_flight`.
                    await settle()
            await send(message)

        settled = False

        async def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                body_out = b"".join(chunks)
                await self._settle(record_key, fingerprint, status, kept, body_out, no_store)

        try:
            await self.app(scope, replay_receive(body, receive), recording_send)
        finally:
            await settle()  # the endpoint failed before finishing its answer

    async def _settle(
        self,
        record_key: str,
        fingerprint: bytes,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        no_store: bool,
    ) -> None:
        try:
            if status >= 500 or status in NOT_EXECUTED:
                await self.redis.delete(record_key)  # not an answer worth repeating
                return
            if no_store:
                record = not_kept_record(fingerprint)
            else:
                record = done_record(fingerprint, status, headers, body)
            await self.redis.set(record_key, record, ex=self.ttl)
        except Exception as exc:
            log.warning("idempotency.store_failed", extra={"error": repr(exc)})
