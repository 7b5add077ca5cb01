"""Acknowledgements from many sockets recorded together: each socket gets its own answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from herald.accounts.service import session_for_token
from herald.core.redis import client
from herald.inbox.acks import ack_channel
from tests.fixtures.herald import RunningHerald
from tests.fixtures.notifications import inapp_record


async def notify(herald: RunningHerald, user: dict[str, Any]) -> int:
    r = await herald.http.post(
        "/api/notifications",
        headers=herald.admin(),
        json={
            "type": "system",
            "title": "hello",
            "message": "hi",
            "channels": ["inapp"],
            "recipients": [{"userId": user["userId"]}],
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["notifications"][0]["notificationId"])


async def session_id(herald: RunningHerald, token: str) -> int:
    async with herald.herald.db() as session:
        found = await session_for_token(session, token)
    assert found is not None
    return found[1].id


async def test_concurrent_acks_share_one_batch_and_each_socket_gets_its_own(
    herald: RunningHerald,
) -> None:
    alice, bob = await herald.member(), await herald.member()
    a1, a2, b1 = await notify(herald, alice), await notify(herald, alice), await notify(herald, bob)
    # Bob's second login session, ended: a socket of it may no longer acknowledge.
    second = await herald.http.post(
        "/api/session", json={"email": bob["email"], "password": bob["password"]}
    )
    old_token = second.json()["sessionToken"]
    old_session = await session_id(herald, old_token)
    logout = await herald.http.delete(
        "/api/session", headers={"Authorization": f"Bearer {old_token}"}
    )
    assert logout.status_code == 200, logout.text

    redis = client(herald.herald.redis_url, decode_responses=True)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(ack_channel(herald.herald.redis_url))
    try:
        h = herald.herald
        answers = await asyncio.gather(
            # Alice also names Bob's notification: not hers, not acknowledged.
            h.inbox.acknowledge(
                alice["userId"],
                await session_id(herald, alice["token"]),
                [a1, a2, b1],
                "sid-alice",
                "websocket",
            ),
            h.inbox.acknowledge(
                bob["userId"], await session_id(herald, bob["token"]), [b1], "sid-bob", "polling"
            ),
            h.inbox.acknowledge(bob["userId"], old_session, [b1], "sid-old", "websocket"),
        )
        message = None
        async with asyncio.timeout(5):
            while message is None:  # None also for the subscription's confirmation
                message = await pubsub.get_message(timeout=1)
    finally:
        await pubsub.aclose()
        await redis.aclose()
    assert answers == [sorted([a1, a2]), [b1], None]
    # One message wakes the workers for both sockets: the three acks were one batch.
    assert message is not None
    assert sorted(json.loads(message["data"]), key=lambda m: m["sid"]) == [
        {"ids": sorted([a1, a2]), "sid": "sid-alice", "transport": "websocket"},
        {"ids": [b1], "sid": "sid-bob", "transport": "polling"},
    ]
    for nid, sid, method in ((a1, "sid-alice", "websocket"), (b1, "sid-bob", "polling")):
        body = await inapp_record(herald, nid)
        assert body["status"] == "delivered" and body["socketId"] == sid, body
        acked = [h for h in body["deliveryHistory"] if h["status"] == "acknowledged"]
        assert [(h["socketId"], h["deliveryMethod"]) for h in acked] == [(sid, method)]
