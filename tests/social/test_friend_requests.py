"""Friend requests: all fifteen endpoints, who may call each, and the recipient's notification."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from herald.notifications.models import InAppNotification
from tests.fixtures.herald import RunningHerald, bearer
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.waiting import eventually


async def send(herald: RunningHerald, sender: dict, to: dict, **fields: Any) -> dict:
    response = await herald.http.post(
        "/api/friend-requests", json={"toUserId": to["userId"], **fields}, headers=sender["auth"]
    )
    assert response.status_code == 201, response.text
    return response.json()


async def act(herald: RunningHerald, who: dict, request: dict, action: str) -> Any:
    return await herald.http.patch(
        f"/api/friend-requests/{request['friendRequestId']}/{action}", headers=who["auth"]
    )


async def befriend(herald: RunningHerald, a: dict, b: dict, **fields: Any) -> dict:
    request = await send(herald, a, b, **fields)
    response = await act(herald, b, request, "accept")
    assert response.status_code == 200, response.text
    return response.json()


class TestCreate:
    async def test_creates_with_seed_fields_and_notifies_recipient(
        self, herald: RunningHerald
    ) -> None:
        alice, bob = await herald.member(), await herald.member()
        client = RecordingClient(ack=True)
        await client.connect(herald.url)
        try:
            await client.authenticate(bob["token"])
            request = await send(
                herald,
                alice,
                bob,
                message="hi!",
                relationshipType="colleague",
                metadata={"source": "search"},
            )
            event = await client.next("notification:new", timeout=20)
        finally:
            await client.close()
        assert request["fromUserId"] == alice["userId"]
        assert request["fromUsername"] == alice["username"]
        assert (request["toUserId"], request["toUsername"]) == (bob["userId"], bob["username"])
        assert request["requestStatus"] == "pending" and request["message"] == "hi!"
        assert request["relationshipType"] == "colleague" and request["visibility"] == "public"
        assert request["mutualFriends"] == [] and request["mutualFriendsCount"] == 0
        assert request["blockedByReceiver"] is False and request["reportedAsSpam"] is False
        assert request["previousInteractions"] == 0 and request["isExpired"] is False
        assert request["metadata"] == {"source": "search"}
        assert request["assignedServer"] == herald.settings.effective_server_id
        created = datetime.fromisoformat(request["createdAt"])
        expires = datetime.fromisoformat(request["expiresAt"])
        assert abs((expires - created) - timedelta(days=30)) < timedelta(seconds=5)
        assert request["friendRequestInAppNotification"] is None  # the sender's view
        as_recipient = await herald.http.get(
            f"/api/friend-requests/{request['friendRequestId']}", headers=bob["auth"]
        )
        tracking = as_recipient.json()["friendRequestInAppNotification"]
        assert tracking["type"] == "friend_request"
        assert tracking["queueJobId"] == tracking["jobId"] == f"inapp-{tracking['notificationId']}"
        assert event["id"] == tracking["notificationId"] and event["type"] == "friend_request"
        assert event["data"]["friendRequestId"] == request["friendRequestId"]

        async def delivered() -> dict | None:
            r = await herald.http.get(
                f"/api/friend-requests/{request['friendRequestId']}", headers=bob["auth"]
            )
            block = r.json()["friendRequestInAppNotification"]
            # The client's ack, then the worker's attempt that waited for it.
            statuses = {h["status"] for h in block["deliveryHistory"]}
            return block if statuses >= {"acknowledged", "delivered"} else None

        block = await eventually(delivered)
        assert block["status"] == "delivered"
        assert block["deliveredVia"] == "websocket" and block["socketId"]

    async def test_by_username(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        response = await herald.http.post(
            "/api/friend-requests", json={"toUsername": bob["username"]}, headers=alice["auth"]
        )
        assert response.status_code == 201
        assert response.json()["toUserId"] == bob["userId"]

    async def test_duplicate_pending_is_409_in_either_direction(
        self, herald: RunningHerald
    ) -> None:
        alice, bob = await herald.member(), await herald.member()
        await send(herald, alice, bob)
        for sender, to in ((alice, bob), (bob, alice)):
            again = await herald.http.post(
                "/api/friend-requests", json={"toUserId": to["userId"]}, headers=sender["auth"]
            )
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == "conflict"

    async def test_concurrent_duplicates_create_one(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        answers = await asyncio.gather(
            *(
                herald.http.post(
                    "/api/friend-requests",
                    json={"toUserId": bob["userId"]},
                    headers=alice["auth"],
                )
                for _ in range(4)
            )
        )
        assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]

    async def test_already_friends_is_409(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        await befriend(herald, alice, bob)
        again = await herald.http.post(
            "/api/friend-requests", json={"toUserId": alice["userId"]}, headers=bob["auth"]
        )
        assert again.status_code == 409 and "already friends" in again.json()["error"]["message"]

    async def test_bad_input_names_the_field(self, herald: RunningHerald) -> None:
        alice = await herald.member()
        cases = [
            ({"toUserId": alice["userId"]}, "toUserId"),  # yourself
            ({"toUserId": 99_999_999}, "toUserId"),  # nobody
            ({"toUsername": "no-such-user-here"}, "toUsername"),
            ({"toUserId": 1, "message": "x" * 501}, "message"),
            ({"toUserId": 1, "relationshipType": "enemy"}, "relationshipType"),
            ({"toUserId": 1, "visibility": "everyone"}, "visibility"),
        ]
        for body, field in cases:
            r = await herald.http.post("/api/friend-requests", json=body, headers=alice["auth"])
            assert r.status_code == 422, (body, r.text)
            assert [d["field"] for d in r.json()["error"]["details"]] == [field], body
        missing = await herald.http.post("/api/friend-requests", json={}, headers=alice["auth"])
        assert missing.status_code == 422

    async def test_needs_a_session(self, herald: RunningHerald) -> None:
        r = await herald.http.post("/api/friend-requests", json={"toUserId": 1})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await herald.http.post(
            "/api/friend-requests", json={"toUserId": 1}, headers=bearer("not-a-token")
        )
        assert r.status_code == 401


class TestMutualFriendsAndHistory:
    async def test_mutual_friends_leave_out_private_friendships(
        self, herald: RunningHerald
    ) -> None:
        alice, bob, carol, dave = [await herald.member() for _ in range(4)]
        await befriend(herald, alice, bob)
        await befriend(herald, alice, carol)
        await befriend(herald, dave, bob)
        await befriend(herald, dave, carol, visibility="private")
        request = await send(herald, bob, carol)
        assert request["mutualFriendsCount"] == 1
        assert request["mutualFriends"] == [
            {"userId": alice["userId"], "username": alice["username"]}
        ]

    async def test_previous_interactions_count_earlier_requests(
        self, herald: RunningHerald
    ) -> None:
        alice, bob = await herald.member(), await herald.member()
        first = await send(herald, alice, bob)
        assert (await act(herald, bob, first, "reject")).status_code == 200
        second = await send(herald, alice, bob)
        assert second["previousInteractions"] == 1


class TestTransitions:
    async def test_accept_makes_friends_and_tells_the_sender(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        request = await send(herald, alice, bob, relationshipType="family")
        assert (await act(herald, alice, request, "accept")).status_code == 403  # not hers
        accepted = await act(herald, bob, request, "accept")
        assert accepted.status_code == 200
        body = accepted.json()
        assert body["requestStatus"] == "accepted" and body["acceptedAt"]
        again = await act(herald, bob, request, "accept")
        assert again.status_code == 409

        for me, other in ((alice, bob), (bob, alice)):
            friends = await herald.http.get(
                f"/api/friend-requests/user/{me['userId']}/friends", headers=me["auth"]
            )
            assert friends.status_code == 200
            [friend] = friends.json()["items"]
            assert friend["userId"] == other["userId"]
            assert friend["relationshipType"] == "family" and friend["friendsSince"]

        async with herald.herald.db() as session:
            told = await session.scalar(
                select(InAppNotification).where(
                    InAppNotification.user_id == alice["userId"],
                    InAppNotification.type == "friend_request_accepted",
                )
            )
        assert told is not None and told.data["friendRequestId"] == request["friendRequestId"]

    async def test_reject_by_recipient_only(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        request = await send(herald, alice, bob)
        assert (await act(herald, alice, request, "reject")).status_code == 403
        rejected = await act(herald, bob, request, "reject")
        assert rejected.status_code == 200
        assert rejected.json()["requestStatus"] == "rejected" and rejected.json()["rejectedAt"]
        assert (await act(herald, bob, request, "accept")).status_code == 409

    async def test_cancel_by_sender_only(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        request = await send(herald, alice, bob)
        assert (await act(herald, bob, request, "cancel")).status_code == 403
        cancelled = await act(herald, alice, request, "cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["requestStatus"] == "cancelled"
        assert cancelled.json()["cancelledAt"]
        # Cancelled frees the pair: a new request may be sent.
        await send(herald, alice, bob)

    async def test_block_stops_further_requests_until_deleted(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        request = await send(herald, alice, bob)
        path = f"/api/friend-requests/{request['friendRequestId']}/block"
        assert (await herald.http.patch(path, headers=alice["auth"])).status_code == 403
        blocked = await herald.http.patch(path, json={"reportAsSpam": True}, headers=bob["auth"])
        assert blocked.status_code == 200
        body = blocked.json()
        assert body["requestStatus"] == "blocked" and body["blockedAt"]
        assert body["blockedByReceiver"] is True and body["reportedAsSpam"] is True
        again = await herald.http.post(
            "/api/friend-requests", json={"toUserId": bob["userId"]}, headers=alice["auth"]
        )
        assert again.status_code == 403 and again.json()["error"]["code"] == "blocked"
        unblock = await herald.http.delete(
            f"/api/friend-requests/{request['friendRequestId']}", headers=bob["auth"]
        )
        assert unblock.status_code == 204
        await send(herald, alice, bob)

    async def test_delete(self, herald: RunningHerald) -> None:
        alice, bob, eve = [await herald.member() for _ in range(3)]
        request = await send(herald, alice, bob)
        path = f"/api/friend-requests/{request['friendRequestId']}"
        assert (await herald.http.delete(path, headers=eve["auth"])).status_code == 404
        assert (await herald.http.delete(path, headers=alice["auth"])).status_code == 204
        assert (await herald.http.get(path, headers=alice["auth"])).status_code == 404
        assert (await herald.http.delete(path, headers=alice["auth"])).status_code == 404

    async def test_unknown_id_is_404(self, herald: RunningHerald) -> None:
        alice = await herald.member()
        r = await herald.http.patch("/api/friend-requests/987654/accept", headers=alice["auth"])
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


class TestAccess:
    async def test_a_stranger_reaches_nothing(self, herald: RunningHerald) -> None:
        alice, bob, eve = [await herald.member() for _ in range(3)]
        request = await send(herald, alice, bob, message="private words")
        rid = request["friendRequestId"]
        for method, path in [
            ("GET", f"/api/friend-requests/{rid}"),
            ("DELETE", f"/api/friend-requests/{rid}"),
            ("PATCH", f"/api/friend-requests/{rid}/accept"),
            ("PATCH", f"/api/friend-requests/{rid}/reject"),
            ("PATCH", f"/api/friend-requests/{rid}/cancel"),
            ("PATCH", f"/api/friend-requests/{rid}/block"),
        ]:
            r = await herald.http.request(method, path, headers=eve["auth"])
            assert r.status_code == 404, (method, path, r.text)
            assert "private words" not in r.text
        for kind in ("pending", "sent", "friends"):
            for victim in (alice, bob):
                r = await herald.http.get(
                    f"/api/friend-requests/user/{victim['userId']}/{kind}", headers=eve["auth"]
                )
                assert r.status_code == 403, (kind, r.text)
                assert "private words" not in r.text
        mine = await herald.http.get("/api/friend-requests", headers=eve["auth"])
        assert mine.status_code == 200 and mine.json()["total"] == 0
        # The operator sees it all.
        r = await herald.http.get(f"/api/friend-requests/{rid}", headers=herald.admin())
        assert r.status_code == 200 and r.json()["message"] == "private words"

    async def test_operations_endpoints_need_the_admin_token(self, herald: RunningHerald) -> None:
        alice = await herald.member()
        for method, path in [
            ("GET", "/api/friend-requests/statistics"),
            ("GET", "/api/friend-requests/notifications/failed"),
            ("GET", "/api/friend-requests/notifications/pending"),
            ("POST", "/api/friend-requests/cleanup"),
        ]:
            assert (await herald.http.request(method, path)).status_code == 401
            r = await herald.http.request(method, path, headers=alice["auth"])
            assert r.status_code == 403, (path, r.text)
            r = await herald.http.request(method, path, headers=herald.admin())
            assert r.status_code == 200, (path, r.text)


class TestLists:
    async def test_list_pending_sent_with_filters_and_pages(self, herald: RunningHerald) -> None:
        alice, bob, carol, dave = [await herald.member() for _ in range(4)]
        to_bob = await send(herald, alice, bob)
        await send(herald, alice, carol)
        from_dave = await send(herald, dave, alice)
        await act(herald, alice, from_dave, "reject")

        everything = await herald.http.get("/api/friend-requests", headers=alice["auth"])
        assert everything.json()["total"] == 3
        sent = await herald.http.get(
            "/api/friend-requests",
            params={"direction": "sent", "limit": 1, "page": 2},
            headers=alice["auth"],
        )
        page = sent.json()
        assert (page["total"], page["page"], page["limit"], page["pages"]) == (2, 2, 1, 2)
        assert page["items"][0]["friendRequestId"] == to_bob["friendRequestId"]  # oldest last
        rejected = await herald.http.get(
            "/api/friend-requests", params={"status": "rejected"}, headers=alice["auth"]
        )
        assert [r["friendRequestId"] for r in rejected.json()["items"]] == [
            from_dave["friendRequestId"]
        ]

        pending = await herald.http.get(
            f"/api/friend-requests/user/{bob['userId']}/pending", headers=bob["auth"]
        )
        assert [r["fromUserId"] for r in pending.json()["items"]] == [alice["userId"]]
        sent_by_alice = await herald.http.get(
            f"/api/friend-requests/user/{alice['userId']}/sent", headers=herald.admin()
        )
        assert sent_by_alice.json()["total"] == 2
        bad = await herald.http.get(
            "/api/friend-requests", params={"limit": 0}, headers=alice["auth"]
        )
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "limit"

    async def test_statistics(self, herald: RunningHerald) -> None:
        # The PostgreSQL stack shares one database across tests: compare before and after.
        async def stats() -> dict:
            r = await herald.http.get("/api/friend-requests/statistics", headers=herald.admin())
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        before = await stats()
        alice, bob, carol = [await herald.member() for _ in range(3)]
        await befriend(herald, alice, bob)
        request = await send(herald, alice, carol)
        await act(herald, carol, request, "reject")
        await send(herald, bob, carol)
        after = await stats()
        assert after["total"] - before["total"] == 3
        for status in ("accepted", "rejected", "pending"):
            assert after["byStatus"][status] - before["byStatus"][status] == 1
        assert after["createdLast24h"] - before["createdLast24h"] == 3
        assert sum(after["notifications"].values()) - sum(before["notifications"].values()) == 3
        if before["total"] == 0:
            assert after["acceptanceRate"] == 0.5


class TestNotificationsAndCleanup:
    async def test_undelivered_then_failed_notifications_are_listed(
        self, herald: RunningHerald
    ) -> None:
        alice, bob = await herald.member(), await herald.member()  # bob never connects
        request = await send(herald, alice, bob)
        rid = request["friendRequestId"]
        pending = await herald.http.get(
            "/api/friend-requests/notifications/pending", headers=herald.admin()
        )
        assert rid in [r["friendRequestId"] for r in pending.json()["items"]]

        async def failed() -> list[int] | None:
            r = await herald.http.get(
                "/api/friend-requests/notifications/failed", headers=herald.admin()
            )
            ids = [x["friendRequestId"] for x in r.json()["items"]]
            return ids if rid in ids else None

        await eventually(failed, timeout=60)
        r = await herald.http.get(f"/api/friend-requests/{rid}", headers=bob["auth"])
        block = r.json()["friendRequestInAppNotification"]
        assert block["status"] == "failed" and block["queueName"] == "inapp-dlq"
        assert block["failureReason"] == "recipient offline"
        assert len(block["escalationHistory"]) == 3

    async def test_cleanup_expires_overdue_requests(self, herald_factory: Any) -> None:
        herald = await herald_factory(friend_request_ttl_days=1 / 86_400)  # one second
        alice, bob = await herald.member(), await herald.member()
        request = await send(herald, alice, bob)
        await asyncio.sleep(1.2)
        overdue = await herald.http.get(
            f"/api/friend-requests/{request['friendRequestId']}", headers=bob["auth"]
        )
        assert overdue.json()["isExpired"] is True
        assert (await act(herald, bob, request, "accept")).status_code == 409
        cleaned = await herald.http.post("/api/friend-requests/cleanup", headers=herald.admin())
        assert cleaned.status_code == 200 and cleaned.json() == {"expired": 1}
        again = await herald.http.post("/api/friend-requests/cleanup", headers=herald.admin())
        assert again.json() == {"expired": 0}
        after = await herald.http.get(
            f"/api/friend-requests/{request['friendRequestId']}", headers=bob["auth"]
        )
        assert after.json()["requestStatus"] == "expired"


class TestWhoMayLiftABlock:
    async def test_the_blocked_sender_cannot_delete_the_block(self, herald: RunningHerald) -> None:
        carol, bob = await herald.member(), await herald.member()
        request = await send(herald, carol, bob)
        assert (await act(herald, bob, request, "block")).status_code == 200
        path = f"/api/friend-requests/{request['friendRequestId']}"
        lifted = await herald.http.delete(path, headers=carol["auth"])
        assert lifted.status_code == 403 and lifted.json()["error"]["code"] == "forbidden"
        again = await herald.http.post(
            "/api/friend-requests", json={"toUserId": bob["userId"]}, headers=carol["auth"]
        )
        assert again.status_code == 403 and again.json()["error"]["code"] == "blocked"
        assert (await herald.http.delete(path, headers=bob["auth"])).status_code == 204


class TestTrackingIsTheRecipients:
    async def test_the_sender_sees_no_read_receipt_or_socket(self, herald: RunningHerald) -> None:
        alice, bob = await herald.member(), await herald.member()
        client = RecordingClient()
        await client.connect(herald.url)
        try:
            await client.authenticate(bob["token"])
            request = await send(herald, alice, bob)
            event = await client.next("notification:new", timeout=20)
            await client.sio.call("notification:markRead", {"id": event["id"]})
        finally:
            await client.close()
        rid = request["friendRequestId"]
        for path in (
            f"/api/friend-requests/{rid}",
            f"/api/friend-requests/user/{alice['userId']}/sent",
            "/api/friend-requests?direction=sent",
        ):
            r = await herald.http.get(path, headers=alice["auth"])
            assert r.status_code == 200 and "isRead" not in r.text and "socketId" not in r.text
            assert "recipient offline" not in r.text and "readAt" not in r.text
        for auth in (bob["auth"], herald.admin()):
            seen = await herald.http.get(f"/api/friend-requests/{rid}", headers=auth)
            block = seen.json()["friendRequestInAppNotification"]
            assert block["isRead"] is True and block["readAt"]


async def catch_up(herald: RunningHerald, who: dict) -> list[dict]:
    """Everything a fresh connection of `who` is sent on authenticating."""
    client = RecordingClient()
    await client.connect(herald.url)
    got = []
    try:
        await client.authenticate(who["token"])
        while True:
            got.append(await client.next("notification:new", timeout=1.5))
    except TimeoutError:
        return got
    finally:
        await client.close()


class TestWithdrawnRequestsWithdrawTheirNotification:
    async def test_reject_cancel_delete_block_and_expiry(self, herald_factory: Any) -> None:
        herald = await herald_factory(friend_request_ttl_days=2 / 86_400)  # two seconds
        bob = await herald.member()  # offline throughout: every request waits for him
        senders = [await herald.member() for _ in range(6)]
        requests = [await send(herald, s, bob, message="buy my stuff") for s in senders]
        _, rejected, cancelled, deleted, blocked, _ = requests  # the first and last: expired
        assert (await act(herald, bob, rejected, "reject")).status_code == 200
        assert (await act(herald, senders[2], cancelled, "cancel")).status_code == 200
        path = f"/api/friend-requests/{deleted['friendRequestId']}"
        assert (await herald.http.delete(path, headers=senders[3]["auth"])).status_code == 204
        assert (await act(herald, bob, blocked, "block")).status_code == 200
        await asyncio.sleep(2.2)
        cleaned = await herald.http.post("/api/friend-requests/cleanup", headers=herald.admin())
        assert cleaned.json()["expired"] == 2
        got = await catch_up(herald, bob)
        assert got == []  # every request is gone or expired: nothing announces one
        async with herald.herald.db() as session:
            rows = (
                await session.scalars(
                    select(InAppNotification).where(
                        InAppNotification.user_id == bob["userId"],
                        InAppNotification.type == "friend_request",
                    )
                )
            ).all()
        # `expired` when a worker's attempt was in flight at that moment: it wrote its outcome
        # over `not_sent`, and the next attempt found the notification expired.
        assert len(rows) == 6 and {r.status for r in rows} <= {"not_sent", "expired"}
        assert "not_sent" in {r.status for r in rows}
        inbox = await herald.http.get("/api/me/notifications", headers=bob["auth"])
        assert "friend_request" not in inbox.text

    async def test_a_live_request_is_still_caught_up(self, herald: RunningHerald) -> None:
        bob, alice, carol = [await herald.member() for _ in range(3)]
        live = await send(herald, alice, bob)
        gone = await send(herald, carol, bob)
        assert (await act(herald, carol, gone, "cancel")).status_code == 200
        got = await catch_up(herald, bob)
        assert [e["data"]["friendRequestId"] for e in got] == [live["friendRequestId"]]
