"""One-click unsubscribe (RFC 8058), followed as a mail provider follows it: the SMTP sink reads
the delivered email's headers, the test POSTs to its List-Unsubscribe link, and the next
email of that type to that subscriber ends `skipped`; critical and other types still arrive."""

from __future__ import annotations

import base64
import email
import json
import re
import uuid
from email.message import Message
from typing import Any

import httpx
import pytest

from tests.fixtures.herald import RunningHerald
from tests.fixtures.smtp import SmtpSink


@pytest.fixture
async def app_herald(herald_factory: Any) -> RunningHerald:
    return await herald_factory(unsubscribe_mailto="unsubscribe@herald.example")  # type: ignore[no-any-return]


async def subscriber(herald: RunningHerald) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    sid, address = f"unsub-{tag}", f"unsub-{tag}@example.com"
    r = await herald.http.put(
        f"/api/subscribers/{sid}", json={"email": address}, headers=herald.admin()
    )
    assert r.status_code == 201, r.text
    return sid, address


async def trigger(herald: RunningHerald, recipient: dict[str, Any], kind: str) -> dict[str, Any]:
    r = await herald.http.post(
        "/api/notifications",
        json={
            "recipients": [recipient],
            "type": kind,
            "title": f"About {kind}",
            "message": "Something happened.",
            "channels": ["email"],
        },
        headers=herald.admin(),
    )
    assert r.status_code == 201, r.text
    return r.json()["notifications"][0]  # type: ignore[no-any-return]


async def received(smtp: SmtpSink, address: str, count: int) -> Message:
    messages = await smtp.wait_for(address, count)
    return email.message_from_bytes(messages[count - 1].original_content)  # type: ignore[arg-type]


def link(message: Message) -> str:
    header = str(message["List-Unsubscribe"])
    found = re.search(r"<(https?://[^>]+)>", header)
    assert found, header
    return found.group(1)


def bodies(message: Message) -> tuple[str, str]:
    parts = {
        p.get_content_subtype(): p.get_payload(decode=True).decode()
        for p in message.walk()
        if not p.is_multipart()
    }  # type: ignore[union-attr]
    return parts["plain"], parts["html"]


async def record(herald: RunningHerald, notification_id: int) -> dict[str, Any]:
    r = await herald.http.get(f"/api/notifications/email/{notification_id}", headers=herald.admin())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def forge(token: str, **claims: Any) -> str:
    """The token with its claims changed and its signature kept."""
    head, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    changed = base64.urlsafe_b64encode(json.dumps({**decoded, **claims}).encode()).rstrip(b"=")
    return f"{head}.{changed.decode()}.{signature}"


class TestOneClick:
    async def test_following_the_header_opts_out_of_that_type_only(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        sid, address = await subscriber(app_herald)
        await trigger(app_herald, {"subscriberId": sid}, "promo")
        message = await received(smtp, address, 1)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = link(message)
        assert url.startswith(f"{app_herald.url}/unsubscribe/")
        assert "<mailto:unsubscribe@herald.example?subject=unsubscribe%20" in str(
            message["List-Unsubscribe"]
        )
        text, html = bodies(message)
        assert url in text and url in html

        # What a mail provider does (RFC 8058): a POST, form-encoded, no cookies, no login.
        async with httpx.AsyncClient() as provider:
            answer = await provider.post(url, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200, answer.text

        prefs = await app_herald.http.get(
            f"/api/subscribers/{sid}/preferences", headers=app_herald.admin()
        )
        assert prefs.json()["types"] == {"promo": {"email": False}}
        again = await trigger(app_herald, {"subscriberId": sid}, "promo")
        assert again["status"] == "skipped"
        skipped = await record(app_herald, again["notificationId"])
        assert skipped["failureReason"] == "preferences: email off for type promo"
        assert [h["status"] for h in skipped["metadata"]["deliveryHistory"]] == ["skipped"]

        # A critical type and another type still arrive; only the critical one has no link.
        await trigger(app_herald, {"subscriberId": sid}, "reset_password")
        critical = await received(smtp, address, 2)
        assert (
            critical["Subject"] == "About reset_password" and critical["List-Unsubscribe"] is None
        )
        assert "unsubscribe" not in bodies(critical)[0].lower()
        await trigger(app_herald, {"subscriberId": sid}, "news")
        news = await received(smtp, address, 3)
        assert news["Subject"] == "About news" and link(news) != url
        assert len(smtp.to(address)) == 3  # the second promo never went out

    async def test_a_forged_or_cut_token_is_refused_and_changes_nothing(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        sid, address = await subscriber(app_herald)
        victim, _ = await subscriber(app_herald)
        await trigger(app_herald, {"subscriberId": sid}, "promo")
        token = link(await received(smtp, address, 1)).rsplit("/", 1)[1]
        for bad in (forge(token, sub=victim), forge(token, type="news"), token[:-3], "nonsense"):
            r = await app_herald.http.post(
                f"/unsubscribe/{bad}", data={"List-Unsubscribe": "One-Click"}
            )
            assert r.status_code == 400 and "not valid" in r.text, bad
            page = await app_herald.http.get(f"/unsubscribe/{bad}")
            assert page.status_code == 400
        for who in (victim, sid):
            prefs = await app_herald.http.get(
                f"/api/subscribers/{who}/preferences", headers=app_herald.admin()
            )
            assert prefs.json()["types"] == {}

    async def test_the_page_confirms_and_offers_the_preference_page(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        sid, address = await subscriber(app_herald)
        await trigger(app_herald, {"subscriberId": sid}, "digest.weekly")
        url = link(await received(smtp, address, 1))
        page = await app_herald.http.get(url)
        assert page.status_code == 200 and "digest.weekly" in page.text and sid in page.text
        assert 'name="List-Unsubscribe" value="One-Click"' in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        # Looking changes nothing (mail scanners fetch links).
        prefs = await app_herald.http.get(
            f"/api/subscribers/{sid}/preferences", headers=app_herald.admin()
        )
        assert prefs.json()["types"] == {}

        centre = await app_herald.http.get(f"{url}/preferences")
        assert centre.status_code == 200
        assert 'value="channel:email" checked' in centre.text
        assert 'value="type:digest.weekly" checked' in centre.text
        # Untick in-app and the weekly digest; keep email.
        saved = await app_herald.http.post(
            f"{url}/preferences",
            content="on=channel%3Aemail&types=digest.weekly",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert saved.status_code == 200 and "Saved" in saved.text
        prefs = await app_herald.http.get(
            f"/api/subscribers/{sid}/preferences", headers=app_herald.admin()
        )
        assert prefs.json()["channels"] == {"inapp": False}
        assert prefs.json()["types"] == {"digest.weekly": {"email": False}}

    async def test_a_plain_address_unsubscribes_by_its_own_token(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        address = f"plain-{uuid.uuid4().hex[:8]}@example.com"
        await trigger(app_herald, {"email": address}, "newsletter")
        message = await received(smtp, address, 1)
        async with httpx.AsyncClient() as provider:
            answer = await provider.post(link(message), data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200 and address in answer.text
        again = await trigger(app_herald, {"email": address.upper()}, "newsletter")
        assert again["status"] == "skipped"
        skipped = await record(app_herald, again["notificationId"])
        assert skipped["failureReason"] == "preferences: address unsubscribed from type newsletter"
        other = await trigger(app_herald, {"email": address}, "receipt")
        assert other["status"] == "queued"

    async def test_a_signed_up_user_without_a_subscriber_id_unsubscribes_by_user(
        self, app_herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        """A `userId` recipient the application never gave a subscriber id: the link names
        the user, and the opt-out holds for the next trigger by `userId`."""
        user = await app_herald.signup()
        address = user["email"]
        await smtp.wait_for(address, 1)  # the welcome email (critical: no link)
        await trigger(app_herald, {"userId": user["userId"]}, "promo")
        message = await received(smtp, address, 2)
        async with httpx.AsyncClient() as provider:
            answer = await provider.post(link(message), data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200, answer.text
        again = await trigger(app_herald, {"userId": user["userId"]}, "promo")
        assert again["status"] == "skipped"
        skipped = await record(app_herald, again["notificationId"])
        assert skipped["failureReason"] == "preferences: email off for type promo"
        other = await trigger(app_herald, {"userId": user["userId"]}, "news")
        assert other["status"] == "queued"
