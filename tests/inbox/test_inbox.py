"""The inbox REST API, kept consistent with the socket events."""

from __future__ import annotations

from typing import Any

from tests.fixtures.herald import RunningHerald
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.waiting import eventually


async def inbox(herald: RunningHerald, member: dict[str, Any], query: str = "") -> dict[str, Any]:
    response = await herald.http.get(f"/api/me/notifications{query}", headers=member["auth"])
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def with_notifications(herald: RunningHerald, count: int) -> tuple[dict[str, Any], list[int]]:
    member = await herald.member()
    ids = []
    for _ in range(count):
        login = await herald.login(member)
        ids.append(login["loginInAppNotification"]["notificationId"])
    return member, ids


class TestInbox:
    async def test_list_unread_filter_count_and_reads(self, herald: RunningHerald) -> None:
        member, ids = await with_notifications(herald, 3)
        body = await inbox(herald, member, "?limit=2")
        assert body["total"] == 3 and body["pages"] == 2
        assert [i["id"] for i in body["items"]] == sorted(ids, reverse=True)[:2]
        assert all(i["isRead"] is False for i in body["items"])

        count = await herald.http.get("/api/me/notifications/unread-count", headers=member["auth"])
        assert count.json() == {"unreadCount": 3}

        marked = await herald.http.post(
            f"/api/me/notifications/{ids[0]}/read", headers=member["auth"]
        )
        assert marked.json() == {"marked": [ids[0]], "unreadCount": 2}
        unread = await inbox(herald, member, "?unread=true")
        assert sorted(i["id"] for i in unread["items"]) == sorted(ids[1:])

        everything = await herald.http.post(
            "/api/me/notifications/read-all", headers=member["auth"]
        )
        assert sorted(everything.json()["marked"]) == sorted(ids[1:])
        assert everything.json()["unreadCount"] == 0
        assert (await inbox(herald, member, "?unread=true"))["total"] == 0

    async def test_reads_through_the_api_reach_open_tabs(self, herald: RunningHerald) -> None:
        member, ids = await with_notifications(herald, 1)
        tab = RecordingClient()
        await tab.connect(herald.url, auth={"token": member["token"]})
        try:
            await tab.next("auth:success")
            await herald.http.post(f"/api/me/notifications/{ids[0]}/read", headers=member["auth"])
            event = await tab.next("notifications:markedRead")
            assert event == {"ids": [ids[0]], "all": False, "unreadCount": 0}
        finally:
            await tab.close()

    async def test_socket_reads_show_in_the_api(self, herald: RunningHerald) -> None:
        member, ids = await with_notifications(herald, 2)
        tab = RecordingClient()
        await tab.connect(herald.url, auth={"token": member["token"]})
        try:
            await tab.next("auth:success")
            await tab.sio.call("notification:markRead", {"ids": ids})

            async def all_read() -> bool:
                return (await inbox(herald, member, "?unread=true"))["total"] == 0

            await eventually(all_read)
        finally:
            await tab.close()


class TestInboxAccess:
    async def test_needs_a_session(self, herald: RunningHerald) -> None:
        assert (await herald.http.get("/api/me/notifications")).status_code == 401
        assert (await herald.http.post("/api/me/notifications/read-all")).status_code == 401

    async def test_another_users_notification_is_not_found_and_untouched(
        self, herald: RunningHerald
    ) -> None:
        owner, ids = await with_notifications(herald, 1)
        intruder = await herald.member()
        response = await herald.http.post(
            f"/api/me/notifications/{ids[0]}/read", headers=intruder["auth"]
        )
        assert response.status_code == 404
        assert str(ids[0]) not in str((await inbox(herald, intruder))["items"])
        assert (await inbox(herald, owner, "?unread=true"))["total"] == 1
        everything = await herald.http.post(
            "/api/me/notifications/read-all", headers=intruder["auth"]
        )
        assert ids[0] not in everything.json()["marked"]
        assert (await inbox(herald, owner, "?unread=true"))["total"] == 1

    async def test_bad_id_is_422(self, herald: RunningHerald) -> None:
        member = await herald.member()
        response = await herald.http.post("/api/me/notifications/abc/read", headers=member["auth"])
        assert response.status_code == 422
