"""Redis memory stays bounded: an idempotency record keeps only what a replay needs, compressed,
and a connection's sent set keeps the newest SENT_LIMIT ids however long the socket lives.
Sizes are Redis's own (`MEMORY USAGE`), on the real Redis of each stack."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from herald.realtime.presence import SENT_LIMIT, SENT_MOST
from herald.web.idempotency import parse_record
from tests.fixtures.herald import RunningHerald
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.waiting import eventually

# A keyed trigger's record (one recipient, both channels: a 269-byte answer) took 776 bytes of
# Redis before records were compressed; 312-328 after (value 538 -> 166 bytes).
RECORD_BOUND = 400
# At most 512 ids, kept in Redis's compact integer encoding: ~2 KB measured (the set it replaces
# grew without end: 27 KB at 600 ids, 514 KB at 9,900; a sorted set would take ~57 KB).
SENT_SET_BOUND = 4096


async def keyed_trigger(herald: RunningHerald, key: str, user_id: int) -> Any:
    return await herald.http.post(
        "/api/notifications",
        headers={**herald.admin(), "Idempotency-Key": key},
        json={
            "recipients": [{"userId": user_id}],
            "type": "x",
            "title": "t",
            "message": "m",
            "channels": ["email", "inapp"],
        },
    )


class TestIdempotencyRecord:
    async def test_a_record_is_small_and_replays_the_first_answer_exactly(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.member()
        first = await keyed_trigger(herald, "size-1", user["userId"])
        assert first.status_code == 201 and len(first.content) > 200
        store = aioredis.from_url(herald.herald.redis_url)
        try:
            [key] = await store.keys("herald:idempotency:*")
            size = await store.memory_usage(key)
            value = await store.get(key)
        finally:
            await store.aclose()
        print(f"idempotency record: {size} B in Redis, value {len(value)} B")
        assert size is not None and size <= RECORD_BOUND
        assert len(value) < len(first.content)  # smaller than the answer it keeps

        again = await keyed_trigger(herald, "size-1", user["userId"])
        assert again.status_code == 201
        assert again.content == first.content
        assert again.headers["content-type"] == first.headers["content-type"]
        assert again.headers["idempotent-replayed"] == "true"

    async def test_a_record_written_by_an_earlier_herald_still_replays(
        self, herald: RunningHerald
    ) -> None:
        user = await herald.member()
        first = await keyed_trigger(herald, "legacy-1", user["userId"])
        store = aioredis.from_url(herald.herald.redis_url)
        try:
            [key] = await store.keys("herald:idempotency:*")
            record = parse_record(await store.get(key))
            legacy = {  # the JSON records of the versions before
                "state": "done",
                "fingerprint": record.fingerprint.hex() + "0" * 32,
                "status": record.status,
                "headers": [["content-type", "application/json"]],
                "body": base64.b64encode(record.body).decode(),
            }
            await store.set(key, json.dumps(legacy), ex=3600)
        finally:
            await store.aclose()
        again = await keyed_trigger(herald, "legacy-1", user["userId"])
        assert again.status_code == 201 and again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"


class TestSentSet:
    async def test_a_long_lived_connection_keeps_only_the_newest_ids(
        self, herald: RunningHerald
    ) -> None:
        """SENT_LIMIT + 100 notifications reach one socket, each once; its sent set holds the
        newest SENT_LIMIT ids and stays under the bound."""
        user = await herald.member()
        client = RecordingClient(ack=True)  # as a real client does: an unacked one is resent
        await client.connect(herald.url)
        try:
            sid = (await client.authenticate(user["token"]))["socketId"]
            count = SENT_LIMIT + 100
            r = await herald.http.post(
                "/api/notifications",
                headers=herald.admin(),
                json={
                    "recipients": [{"userId": user["userId"]}] * count,
                    "type": "x",
                    "title": f"many-{uuid.uuid4().hex[:6]}",
                    "message": "m",
                },
            )
            assert r.status_code == 201, r.text
            ids = [n["notificationId"] for n in r.json()["notifications"]]
            received: list[int] = []

            arrivals = client.events["notification:new"]

            async def all_arrived() -> bool:
                while not arrivals.empty():
                    received.append(arrivals.get_nowait()["id"])
                return set(ids) <= set(received)

            await eventually(all_arrived, timeout=120, interval=0.2)
            duplicates = {i: n for i, n in Counter(received).items() if n > 1}
            assert not duplicates
            key = f"herald:sent:{sid}"
            store = herald.herald.redis
            members = {int(m) for m in await store.smembers(key)}
            size = await store.memory_usage(key)
            encoding = await store.object("encoding", key)
        finally:
            await client.close()
        print(f"sent set after {count} notifications: {len(members)} ids, {size} B, {encoding}")
        assert SENT_LIMIT <= len(members) <= SENT_MOST and members <= set(ids)
        # Workers deliver a few at a time, not in id order: the newest 400 are surely kept.
        assert set(sorted(ids)[-400:]) <= members
        assert encoding == "intset"
        assert size is not None and size <= SENT_SET_BOUND

        async def forgotten() -> bool:  # gone with the connection
            return not await herald.herald.redis.exists(key)

        await eventually(forgotten, timeout=10)

    async def test_what_is_kept_and_what_counts_as_new(self, herald: RunningHerald) -> None:
        """The set's rules, straight on Redis: a catch-up bigger than the limit, repeats, an
        id older than everything kept."""
        presence = herald.herald.presence
        sid = f"test-{uuid.uuid4().hex[:8]}"
        backlog = list(range(1000, 1600))  # 600 at once: more than is kept
        assert await presence.claim(sid, backlog) == backlog  # all new, all sent
        kept = {int(m) for m in await herald.herald.redis.smembers(f"herald:sent:{sid}")}
        assert kept == set(backlog[-SENT_LIMIT:])
        assert await presence.claim(sid, backlog[-SENT_LIMIT:]) == []  # never twice
        assert await presence.claim(sid, [1600]) == [1600]
        assert await presence.claim(sid, [1600]) == []
        # Older than everything kept: counted as not sent, so it is sent (a duplicate at worst,
        # never a loss).
        assert await presence.claim(sid, [1000]) == [1000]
        for i in range(1601, 1700):
            await presence.claim(sid, [i])
        kept = {int(m) for m in await herald.herald.redis.smembers(f"herald:sent:{sid}")}
        assert SENT_LIMIT <= len(kept) <= SENT_MOST
        assert set(range(1700 - SENT_LIMIT, 1700)) <= kept
        assert await herald.herald.redis.object("encoding", f"herald:sent:{sid}") == "intset"
