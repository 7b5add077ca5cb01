"""The demo client (`/`) and the operations dashboard (`/dashboard`) in a real headless Chromium.

Playwright drives Debian's `chromium` through `executable_path` (`make test` installs it; the
Playwright browser download is never used). Screenshots of both pages, at laptop and phone
widths, are saved under `test-artifacts/`.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.fixtures.browser import LAPTOP, PHONE, signed_in
from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.paths import ROOT
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

ARTIFACTS = ROOT / "test-artifacts"


async def login_through_form(page: Page, herald: RunningHerald, user: dict[str, Any]) -> None:
    await page.goto(herald.url + "/")
    await page.get_by_label("Email or username").fill(user["username"])
    await page.locator("#login-password").fill(user["password"])
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_test_id("connection")).to_contain_text("Live on")


def save(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


class TestDemoClient:
    async def test_friend_request_toast_arrives_within_two_seconds(
        self, herald: RunningHerald, contexts: Any
    ) -> None:
        alice, bob = await herald.member(), await herald.member()
        page_a = await contexts()
        page_b = await contexts()
        tab_a, tab_b = await page_a.new_page(), await page_b.new_page()
        await login_through_form(tab_a, herald, alice)
        await login_through_form(tab_b, herald, bob)

        await tab_a.locator("#friend-username").fill(bob["username"])
        await tab_a.get_by_label("Message (optional)").fill("We met at the conference")
        sent_at = time.monotonic()
        await tab_a.get_by_role("button", name="Send request").click()
        toast = tab_b.get_by_test_id("toast").filter(has_text="sent you a friend request")
        await expect(toast).to_be_visible(timeout=2000)
        print(f"\nfriend request toast after {time.monotonic() - sent_at:.3f} s")
        assert alice["username"] in await toast.inner_text()

        # Bob answers from his list; Alice hears about it and sees him among her friends.
        incoming = tab_b.get_by_test_id("incoming-request").filter(has_text=alice["username"])
        await incoming.get_by_role("button", name=f"Accept {alice['username']}").click()
        accepted = tab_a.get_by_test_id("toast").filter(has_text="accepted your friend request")
        await expect(accepted).to_be_visible(timeout=5000)
        await expect(
            tab_a.get_by_test_id("friend").filter(has_text=bob["username"])
        ).to_be_visible()

    async def test_reject_and_purchase_and_signup(
        self, herald: RunningHerald, contexts: Any, smtp: SmtpSink
    ) -> None:
        carol = await herald.member()
        tab = await (await contexts()).new_page()
        name = f"d{uuid.uuid4().hex[:8]}"
        await tab.goto(herald.url + "/")
        await tab.locator("#signup-username").fill(name)
        await tab.locator("#signup-email").fill(f"{name}@example.com")
        await tab.locator("#signup-password").fill("correct-horse-battery")
        await tab.get_by_role("button", name="Create account").click()
        await expect(tab.get_by_test_id("connection")).to_contain_text("Live on")
        await expect(tab.get_by_test_id("toast").filter(has_text="New sign-in")).to_be_visible()

        r = await herald.http.post(
            "/api/friend-requests", json={"toUsername": name}, headers=carol["auth"]
        )
        assert r.status_code == 201
        request = tab.get_by_test_id("incoming-request").filter(has_text=carol["username"])
        await request.get_by_role("button", name=f"Reject {carol['username']}").click()
        await expect(request).to_have_count(0)
        got = await herald.http.get(
            f"/api/friend-requests/{r.json()['friendRequestId']}", headers=carol["auth"]
        )
        assert got.json()["requestStatus"] == "rejected"

        await tab.get_by_label("Item").fill("Fountain pen")
        await tab.get_by_label("Quantity").fill("2")
        await tab.get_by_role("button", name="Buy").click()
        await expect(tab.locator("#purchase-result")).to_contain_text("$25.00")
        purchase = tab.get_by_test_id("inbox-item").filter(has_text="Purchase confirmed")
        await expect(purchase).to_contain_text("25.00 USD")
        await smtp.wait_for(f"{name}@example.com", count=3)  # welcome, sign-in alert, receipt

    async def test_reading_in_one_tab_clears_the_badge_in_the_other(
        self, herald: RunningHerald, contexts: Any
    ) -> None:
        alice, bob = await herald.member(), await herald.member()
        context = await contexts()
        first = await signed_in(context, herald, bob)
        second = await context.new_page()
        await second.goto(herald.url + "/")
        await expect(second.get_by_test_id("connection")).to_contain_text("Live on")
        for tab in (first, second):
            await expect(tab.get_by_test_id("unread-badge")).to_be_hidden()

        r = await herald.http.post(
            "/api/friend-requests", json={"toUserId": bob["userId"]}, headers=alice["auth"]
        )
        assert r.status_code == 201
        for tab in (first, second):
            await expect(tab.get_by_test_id("unread-badge")).to_have_text("1")

        item = first.get_by_test_id("inbox-item").filter(has_text="New friend request")
        await item.get_by_role("button", name="Mark “New friend request” read").click()
        await expect(second.get_by_test_id("unread-badge")).to_be_hidden()
        await expect(second.get_by_test_id("unread-badge")).to_have_text("0")
        await expect(first.get_by_test_id("unread-badge")).to_be_hidden()

    async def test_connection_indicator_shows_a_reconnect(
        self, herald: RunningHerald, contexts: Any
    ) -> None:
        bob = await herald.member()
        tab = await signed_in(await contexts(), herald, bob)
        sid = await tab.evaluate("window.heraldDemo.socket.id")
        # The transport drops under the socket, as when the network goes away: the client
        # comes back by itself, signs in again, and says so.
        await tab.evaluate("window.heraldDemo.socket.io.engine.close()")
        await expect(tab.get_by_test_id("connection")).to_contain_text(
            "reconnected 1×", timeout=10_000
        )
        new_sid = await tab.evaluate("window.heraldDemo.socket.id")
        assert new_sid != sid

        async def moved() -> bool:
            return await herald.herald.presence.sockets(bob["userId"]) == [new_sid]

        await eventually(moved)


class TestDashboard:
    async def test_dead_letter_shown_and_replay_delivers_it(
        self, herald: RunningHerald, contexts: Any, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "550 5.1.1 no such user here"
        user = await herald.signup()
        email_id = user["welcomeEmail"]["notificationId"]

        async def dead() -> bool:
            r = await herald.http.get("/api/ops/dlq/email", headers=herald.admin())
            return email_id in [d["notificationId"] for d in r.json()["items"]]

        await eventually(dead)
        tab = await (await contexts()).new_page()
        await tab.goto(herald.url + "/dashboard")
        await tab.get_by_label("Token", exact=True).fill("not the token")
        await tab.get_by_role("button", name="Open dashboard").click()
        await expect(tab.get_by_role("alert").first).to_contain_text("not the admin token")
        await tab.get_by_label("Token", exact=True).fill(ADMIN_TOKEN)
        await tab.get_by_role("button", name="Open dashboard").click()
        await expect(tab.get_by_test_id("connection")).to_have_text("Live")

        row = tab.locator(f'[data-testid="dead-letter"][data-id="{email_id}"]')
        await expect(row).to_contain_text("550 5.1.1")
        await expect(row).to_contain_text(user["email"])
        await expect(
            tab.get_by_test_id("queues").locator('[data-queue="mail-dlq"]')
        ).to_be_visible()

        await row.get_by_role("button", name=f"Inspect email {email_id}").click()
        await expect(tab.locator("dialog")).to_contain_text("mail → mail-dlq")
        await tab.get_by_role("button", name="Close").click()

        smtp.fail_with = None
        await row.get_by_role("button", name=f"Replay email {email_id}").click()
        await smtp.wait_for(user["email"])
        await expect(row).to_have_count(0)

        async def delivered() -> bool:
            r = await herald.http.get(
                f"/api/signups/{user['userId']}/welcome-email-status", headers=herald.admin()
            )
            return bool(r.json()["welcomeEmail"]["status"] == "delivered")

        await eventually(delivered)

    async def test_live_stage_events_reach_the_page(
        self, herald: RunningHerald, contexts: Any
    ) -> None:
        context = await contexts()
        await context.add_init_script(f"sessionStorage.setItem('herald.admin', '{ADMIN_TOKEN}');")
        tab = await context.new_page()
        await tab.goto(herald.url + "/dashboard")
        await expect(tab.get_by_test_id("connection")).to_have_text("Live")
        request_id = f"page-{uuid.uuid4().hex[:10]}"
        name = f"s{uuid.uuid4().hex[:8]}"
        await herald.http.post(
            "/api/signups",
            json={"username": name, "email": f"{name}@example.com", "password": "s3cret-pass"},
            headers={"X-Request-ID": request_id},
        )
        event = tab.locator("#stages li").filter(has_text=request_id)
        await expect(event.filter(has_text="channel")).to_have_count(1, timeout=10_000)
        await tab.get_by_role("button", name=request_id).first.click()
        dialog = tab.locator("dialog")
        for stage in ("server", "database", "queue", "worker", "channel"):
            await expect(dialog).to_contain_text(stage)


class TestScreenshots:
    async def test_both_pages_at_laptop_and_phone_width(
        self, herald_factory: Any, contexts: Any
    ) -> None:
        # The capture mailbox instead of the test's SMTP server, so the dashboard shows it.
        herald: RunningHerald = await herald_factory(email_host=None)
        names = ("ada", "grace", "alan", "edsger")
        people = {n: await herald.member(username=f"{n}{uuid.uuid4().hex[:4]}") for n in names}
        ada, grace = people["ada"], people["grace"]
        for other in ("alan", "edsger"):
            await herald.http.post(
                "/api/friend-requests",
                json={"toUserId": ada["userId"]},
                headers=people[other]["auth"],
            )
        request = await herald.http.post(
            "/api/friend-requests", json={"toUserId": grace["userId"]}, headers=ada["auth"]
        )
        await herald.http.patch(
            f"/api/friend-requests/{request.json()['friendRequestId']}/accept",
            headers=grace["auth"],
        )
        await herald.http.post(
            "/api/purchases",
            json={"items": [{"name": "Notebook", "quantity": 2, "unitAmount": 1250}]},
            headers=ada["auth"],
        )
        for viewport, label in ((LAPTOP, "laptop"), (PHONE, "phone")):
            tab = await signed_in(await contexts(viewport), herald, ada)
            await expect(tab.get_by_test_id("inbox-item").nth(3)).to_be_visible()
            await herald.http.post(
                "/api/friend-requests",
                json={"toUserId": ada["userId"]},
                headers=(await herald.member())["auth"],
            )
            await expect(tab.get_by_test_id("toast").first).to_be_visible()
            await tab.wait_for_timeout(300)  # the toast's slide-in
            await tab.screenshot(path=save(f"demo-client-{label}.png"), full_page=True)

        # A dead letter for the dashboard: an in-app notification to someone never online.
        await herald.http.post(
            "/api/friend-requests",
            json={"toUserId": people["edsger"]["userId"]},
            headers=grace["auth"],
        )

        async def dead_letter() -> bool:
            r = await herald.http.get("/api/ops/dlq/inapp", headers=herald.admin())
            return bool(r.json()["total"])

        await eventually(dead_letter, timeout=30)
        for viewport, label in ((LAPTOP, "laptop"), (PHONE, "phone")):
            context = await contexts(viewport)
            await context.add_init_script(
                f"sessionStorage.setItem('herald.admin', '{ADMIN_TOKEN}');"
            )
            tab = await context.new_page()
            await tab.goto(herald.url + "/dashboard")
            await expect(tab.get_by_test_id("connection")).to_have_text("Live")
            for _ in range(8 if label == "laptop" else 2):  # some seconds of live chart
                await herald.signup()
                await tab.wait_for_timeout(800)
            await tab.get_by_role("tab", name="In-app").click()
            await expect(tab.get_by_test_id("dead-letter").first).to_be_visible()
            await expect(tab.locator("#mailbox li").first).to_contain_text("to ")
            await tab.evaluate("window.scrollTo(0, 0)")
            await tab.screenshot(path=save(f"dashboard-{label}.png"), full_page=True)


class TestOffline:
    async def test_pages_fetch_nothing_from_anywhere_but_herald(
        self, herald: RunningHerald, contexts: Any
    ) -> None:
        context = await contexts()
        elsewhere: list[str] = []

        async def only_herald(route: Any) -> None:
            if route.request.url.startswith(herald.url):
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_herald)
        await context.add_init_script(f"sessionStorage.setItem('herald.admin', '{ADMIN_TOKEN}');")
        user = await herald.member()
        demo = await signed_in(context, herald, user)  # the Socket.IO client came from Herald
        dashboard = await context.new_page()
        await dashboard.goto(herald.url + "/dashboard", wait_until="networkidle")
        await expect(dashboard.get_by_test_id("connection")).to_have_text("Live")
        await demo.reload(wait_until="networkidle")
        assert elsewhere == []
