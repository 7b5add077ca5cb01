"""Signed webhooks, against a real HTTP receiver that verifies every signature with the
`standardwebhooks` package and the secret Herald answered at registration."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import event
from standardwebhooks import Webhook

from herald.channels.webhook import signed_headers
from herald.core.redis import free_port
from tests.fixtures import readme
from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.processes import herald_cli
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


@dataclass
class Delivery:
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def data(self) -> dict[str, Any]:
        return self.body["data"]  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """An HTTP server that answers `status` and keeps each request whose signature verifies
    (a request that does not verify is kept in `forged` and answered 400)."""

    port: int = 0
    status: int = 200
    secret: str | None = None
    received: list[Delivery] = field(default_factory=list)
    forged: list[dict[str, str]] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # webhook-id of every request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/herald"

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        try:
            assert self.secret is not None
            body = Webhook(self.secret).verify(raw, headers)
        except Exception:
            self.forged.append(headers)
            return web.Response(status=400)
        self.attempts.append(request.headers["webhook-id"])
        if self.status >= 300:
            return web.Response(status=self.status, text="receiver is broken")
        self.received.append(Delivery({k.lower(): v for k, v in headers.items()}, body))
        return web.Response(status=self.status)

    def about(self, channel: str, notification_id: int) -> list[Delivery]:
        return [
            d
            for d in self.received
            if d.data.get("channel") == channel and d.data.get("notificationId") == notification_id
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(port=free_port())
    app = web.Application()
    app.router.add_post("/hooks/herald", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", found.port)
    await site.start()
    yield found
    await runner.cleanup()


async def register(herald: RunningHerald, url: str, events: list[str]) -> dict[str, Any]:
    r = await herald.http.post(
        "/api/ops/webhooks", json={"url": url, "events": events}, headers=herald.admin()
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
async def endpoints(herald_factory: Any) -> AsyncIterator[list[RunningHerald]]:
    """Heralds whose endpoints are deleted after the test: the PostgreSQL database is shared
    by the session's tests, and a later test must not send to this one's receiver."""
    used: list[RunningHerald] = []
    yield used
    for herald in used:
        listed = await herald.http.get("/api/ops/webhooks", headers=herald.admin())
        for item in listed.json()["items"]:
            await herald.http.delete(f"/api/ops/webhooks/{item['id']}", headers=herald.admin())


async def subscribe(
    herald: RunningHerald, receiver: Receiver, events: list[str], used: list[RunningHerald]
) -> dict[str, Any]:
    used.append(herald)
    endpoint = await register(herald, receiver.url, events)
    receiver.secret = endpoint["secret"]
    return endpoint


async def trigger(
    herald: RunningHerald, user: dict[str, Any], channels: list[str]
) -> dict[str, int]:
    r = await herald.http.post(
        "/api/notifications",
        json={
            "recipients": [{"userId": user["userId"]}],
            "type": "comment",
            "title": "New comment",
            "message": "Grace: lovely work!",
            "channels": channels,
        },
        headers=herald.admin(),
    )
    assert r.status_code == 201, r.text
    return {n["channel"]: n["notificationId"] for n in r.json()["notifications"]}


async def test_registration_is_validated_and_the_secret_is_shown_once(
    herald: RunningHerald, endpoints: list[RunningHerald]
) -> None:
    endpoints.append(herald)
    admin = herald.admin()
    for body, bad in (
        ({"url": "ftp://example.com/hook", "events": ["notification.queued"]}, "url"),
        ({"url": "not a url", "events": ["*"]}, "url"),
        ({"url": "http:///no-host", "events": ["*"]}, "url"),
        ({"url": "https://example.com/hook", "events": ["notification.exploded"]}, "events"),
        ({"url": "https://example.com/hook", "events": []}, "events"),
    ):
        r = await herald.http.post("/api/ops/webhooks", json=body, headers=admin)
        assert r.status_code == 422, r.text
        assert [d["field"] for d in r.json()["error"]["details"]] == [bad], r.text
    r = await herald.http.post("/api/ops/webhooks", json={"url": "https://x.example/h"})
    assert r.status_code == 401

    made = await register(herald, "https://hooks.example.com/herald", ["notification.failed"])
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 40
    Webhook(made["secret"])  # the package accepts it as a Standard Webhooks secret
    listed = (await herald.http.get("/api/ops/webhooks", headers=admin)).json()["items"]
    mine = [e for e in listed if e["id"] == made["id"]]
    assert mine and mine[0]["events"] == ["notification.failed"]
    assert "secret" not in json.dumps(listed)

    rotated = await herald.http.post(f"/api/ops/webhooks/{made['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200 and rotated.json()["secret"] != made["secret"]
    gone = await herald.http.delete(f"/api/ops/webhooks/{made['id']}", headers=admin)
    assert gone.status_code == 200
    again = await herald.http.delete(f"/api/ops/webhooks/{made['id']}", headers=admin)
    assert again.status_code == 404
    listed = (await herald.http.get("/api/ops/webhooks", headers=admin)).json()["items"]
    assert made["id"] not in [e["id"] for e in listed]


async def test_a_trigger_sends_signed_queued_and_delivered_events_for_both_channels(
    herald: RunningHerald, smtp: SmtpSink, receiver: Receiver, endpoints: list[RunningHerald]
) -> None:
    await subscribe(herald, receiver, ["*"], endpoints)
    user = await herald.member()
    client = RecordingClient(ack=True)
    await client.connect(herald.url, auth={"token": user["token"]})
    try:
        ids = await trigger(herald, user, ["inapp", "email"])

        # Deliveries of different events are independent jobs: they may arrive in any order
        # (receivers order them by `timestamp`), so wait until each expected one has arrived.
        expected = {
            "inapp": {"notification.queued", "notification.delivered", "notification.acked"},
            "email": {"notification.queued", "notification.delivered"},
        }

        async def all_arrived() -> dict[str, list[str]] | None:
            kinds = {ch: [d.type for d in receiver.about(ch, nid)] for ch, nid in ids.items()}
            return kinds if all(expected[ch] <= set(k) for ch, k in kinds.items()) else None

        arrived = await eventually(all_arrived, timeout=30)
    finally:
        await client.close()
    assert not receiver.forged
    for channel, nid in ids.items():
        events = sorted(receiver.about(channel, nid), key=lambda d: d.body["timestamp"])
        kinds = [d.type for d in events]
        assert kinds[0] == "notification.queued", kinds
        assert events[0].data["queue"] == ("mail" if channel == "email" else "inapp")
        delivered = next(d for d in events if d.type == "notification.delivered")
        assert delivered.body["timestamp"] > events[0].body["timestamp"]
        assert delivered.data["status"] == "delivered"
        assert all(
            d.data["type"] == "comment" and d.data["userId"] == user["userId"] for d in events
        )
        assert len({d.id for d in events}) == len(events)  # one webhook-id per event
    assert sorted(arrived["inapp"]) == sorted(expected["inapp"])  # each event once
    email = next(d for d in receiver.about("email", ids["email"]) if d.type.endswith("delivered"))
    assert email.data["attempt"] == {"number": 1, "tier": 0, "queue": "mail"}


async def _async(value: Any) -> Any:
    return value


async def test_a_failing_smtp_server_produces_failed_events_with_the_attempt(
    herald_factory: Any, smtp: SmtpSink, receiver: Receiver, endpoints: list[RunningHerald]
) -> None:
    herald = await herald_factory(
        mail_max_attempts=2, mail_retry_1_max_attempts=1, mail_retry_2_max_attempts=1
    )
    events = ["notification.failed", "notification.escalated", "notification.dead_lettered"]
    await subscribe(herald, receiver, events, endpoints)
    smtp.fail_with = "451 4.3.0 try again later"
    user = await herald.signup()
    ids = await trigger(herald, user, ["email"])

    async def dead() -> list[Delivery] | None:
        """All seven: four failed attempts, two escalations, the dead letter (they arrive in
        any order: each is a delivery of its own)."""
        got = receiver.about("email", ids["email"])
        return got if len(got) >= 7 else None

    got = sorted(await eventually(dead, timeout=60), key=lambda d: d.body["timestamp"])
    failed = [d.data["attempt"] for d in got if d.type == "notification.failed"]
    assert [a["number"] for a in failed] == [1, 2, 3, 4]
    assert [a["queue"] for a in failed] == ["mail", "mail", "mail-retry-1", "mail-retry-2"]
    assert all("451" in a["error"] for a in failed)
    moves = [
        (d.data["fromQueue"], d.data["toQueue"]) for d in got if d.type != "notification.failed"
    ]
    assert moves == [
        ("mail", "mail-retry-1"),
        ("mail-retry-1", "mail-retry-2"),
        ("mail-retry-2", "mail-dlq"),
    ]
    assert not receiver.forged


SMALL_WEBHOOK_LADDER = {
    "webhook_max_attempts": 2,
    "webhook_retry_1_max_attempts": 1,
    "webhook_retry_2_max_attempts": 1,
    "webhook_retry_1_delay": 200,
    "webhook_retry_2_delay": 200,
}


async def test_a_broken_receiver_climbs_the_tiers_and_a_replay_keeps_the_webhook_id(
    herald_factory: Any, smtp: SmtpSink, receiver: Receiver, endpoints: list[RunningHerald]
) -> None:
    herald = await herald_factory(**SMALL_WEBHOOK_LADDER)
    endpoint = await subscribe(herald, receiver, ["notification.delivered"], endpoints)
    receiver.status = 500
    user = await herald.signup()
    ids = await trigger(herald, user, ["email"])
    admin = herald.admin()

    async def dead_letter() -> dict[str, Any] | None:
        """The dead letter announcing our email (the signup's welcome email has one too)."""
        r = await herald.http.get("/api/ops/dlq/webhook", headers=admin)
        for d in r.json()["items"]:
            got = await herald.http.get(
                f"/api/notifications/webhook/{d['notificationId']}", headers=admin
            )
            if json.loads(got.json()["payload"])["data"]["notificationId"] == ids["email"]:
                return d  # type: ignore[no-any-return]
        return None

    letter = await eventually(dead_letter, timeout=60)
    assert letter["type"] == "notification.delivered" and "HTTP 500" in letter["failureReason"]
    story = (
        await herald.http.get(f"/api/ops/dlq/webhook/{letter['notificationId']}", headers=admin)
    ).json()
    assert [(e["fromQueue"], e["toQueue"]) for e in story["escalationHistory"]] == [
        ("webhook", "webhook-retry-1"),
        ("webhook-retry-1", "webhook-retry-2"),
        ("webhook-retry-2", "webhook-dlq"),
    ]
    assert story["endpointId"] == endpoint["id"] and story["status"] == "failed"
    # Four attempts (2 + 1 + 1), each with the same webhook-id.
    assert receiver.attempts.count(story["eventId"]) == 4
    # A webhook's own failures are not announced by webhook (no loops): nothing but the
    # email's delivered event was ever attempted.
    assert not receiver.received

    receiver.status = 200
    r = await herald.http.post(
        "/api/ops/dlq/webhook/replay", json={"ids": [letter["notificationId"]]}, headers=admin
    )
    assert r.json()["replayed"] == [letter["notificationId"]]
    arrived = await eventually(lambda: _async(receiver.about("email", ids["email"])))
    assert [d.id for d in arrived] == [story["eventId"]]  # the same webhook-id after replay
    assert arrived[0].type == "notification.delivered"

    async def recorded() -> dict[str, Any] | None:
        r = await herald.http.get(
            f"/api/notifications/webhook/{letter['notificationId']}", headers=admin
        )
        return r.json() if r.json()["status"] == "delivered" else None

    record = await eventually(recorded)
    assert record["response"] == "200 OK" and record["eventId"] == story["eventId"]
    assert json.loads(record["payload"]) == arrived[0].body


async def test_a_receiver_that_is_down_does_not_hold_up_notifications(
    herald_factory: Any, smtp: SmtpSink, endpoints: list[RunningHerald]
) -> None:
    herald = await herald_factory(**SMALL_WEBHOOK_LADDER)
    endpoints.append(herald)
    down = f"http://127.0.0.1:{free_port()}/nobody-listens"
    await register(herald, down, ["*"])
    users = [await herald.signup() for _ in range(3)]
    for user in users:
        await trigger(herald, user, ["email"])
    for user in users:
        await smtp.wait_for(user["email"])  # every email arrives, the receiver never answers

    async def refused() -> list[dict[str, Any]] | None:
        r = await herald.http.get("/api/ops/dlq/webhook?limit=100", headers=herald.admin())
        mine = [d for d in r.json()["items"] if d["recipient"] == down]
        return mine if len(mine) >= 2 * len(users) else None  # queued + delivered each

    letters = await eventually(refused, timeout=60)
    assert all("unreachable" in d["failureReason"] for d in letters)
    # The same dead letters through `herald dlq`.
    listed = await herald_cli(herald, "dlq", "list", "--channel", "webhook", "--json")
    assert listed.returncode == 0, listed.stderr
    cli_ids = {d["notificationId"] for d in json.loads(listed.stdout) if d["recipient"] == down}
    assert cli_ids >= {d["notificationId"] for d in letters}  # more may have come since
    shown = await herald_cli(herald, "dlq", "show", "webhook", str(letters[0]["notificationId"]))
    assert json.loads(shown.stdout)["eventId"].startswith("msg_")


async def test_a_webhook_signature_does_not_verify_with_another_secret(
    herald: RunningHerald, receiver: Receiver, endpoints: list[RunningHerald]
) -> None:
    """The receiver's check is real: with a secret other than the endpoint's, every delivery
    is refused as forged."""
    await subscribe(herald, receiver, ["notification.queued"], endpoints)
    receiver.secret = (await register(herald, "https://other.example/h", ["*"]))["secret"]
    user = await herald.signup()
    await trigger(herald, user, ["email"])
    await eventually(lambda: _async(receiver.forged))
    assert not receiver.received
    await asyncio.sleep(0)


# --- README "Webhooks", run as written ----------------------------------------------------------
SECTION = "## Webhooks"


def readme_blocks() -> list[tuple[str, str]]:
    return readme.blocks(SECTION)


async def test_the_readme_examples_register_receive_and_verify(
    herald: RunningHerald, smtp: SmtpSink, endpoints: list[RunningHerald], tmp_path: Path
) -> None:
    endpoints.append(herald)
    blocks = readme_blocks()
    assert [lang for lang, _ in blocks] == ["sh", "json", "python", "python", "json", "sh"]
    port = free_port()

    def local(text: str) -> str:
        return text.replace("http://localhost:9000", f"http://127.0.0.1:{port}").replace(
            "localhost:8000", herald.url.removeprefix("http://")
        )

    # The curl block, in bash, from a folder holding the admin token where `make run` keeps it.
    (tmp_path / "herald-data").mkdir()
    (tmp_path / "herald-data" / "admin-token").write_text(ADMIN_TOKEN)
    curl = await asyncio.create_subprocess_exec(
        "bash",
        "-eu",
        "-c",
        local(blocks[0][1]),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(curl.communicate(), 30)
    assert curl.returncode == 0, err.decode()
    secret = json.loads(out)["secret"]

    # The receiver, as written but for its port, started as the README says.
    script = tmp_path / "receiver.py"
    script.write_text(blocks[2][1].replace("9000", str(port)))
    receiver = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env={**os.environ, "HERALD_WEBHOOK_SECRET": secret},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await eventually(lambda: _listening(port))
        user = await herald.signup()
        ids = await trigger(herald, user, ["email"])
        expected = f"notification.delivered email {ids['email']} delivered"
        assert receiver.stdout is not None
        while True:
            line = (await asyncio.wait_for(receiver.stdout.readline(), 30)).decode()
            assert line, (await receiver.stderr.read()).decode()  # type: ignore[union-attr]
            if line.strip() == expected:
                break
    finally:
        receiver.terminate()
        await receiver.wait()

    # The hmac block agrees with Herald's signatures, and refuses a changed body.
    namespace: dict[str, Any] = {}
    exec(compile(blocks[3][1], "README.md, hmac block", "exec"), namespace)
    body = '{"type":"notification.read"}'
    headers = signed_headers(secret, "msg_1", body, datetime.now(UTC))
    assert namespace["verify"](secret, headers, body.encode())
    assert not namespace["verify"](secret, headers, body.encode() + b" ")
    other = (await register(herald, "https://other.example/h", ["*"]))["secret"]
    assert not namespace["verify"](other, headers, body.encode())


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def test_emitting_with_no_endpoint_costs_no_query_while_the_cache_is_fresh(
    herald_factory: Any, smtp: SmtpSink, receiver: Receiver, endpoints: list[RunningHerald]
) -> None:
    herald = await herald_factory(webhook_cache_seconds=600)
    endpoints.append(herald)
    lookups: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "FROM webhook_endpoints" in statement:
            lookups.append(statement)

    engine = herald.herald.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        user = await herald.signup()
        for _ in range(5):
            await trigger(herald, user, ["email", "inapp"])
        await smtp.wait_for(user["email"], count=6)
        assert len(lookups) <= 1  # one load for the process, then none per event
        # A registration through this process is seen by its next event at once.
        await subscribe(herald, receiver, ["notification.queued"], endpoints)
        ids = await trigger(herald, user, ["email"])
        await eventually(lambda: _async(receiver.about("email", ids["email"])))
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_a_notification_the_preferences_skip_sends_a_skipped_event(
    herald: RunningHerald, smtp: SmtpSink, receiver: Receiver, endpoints: list[RunningHerald]
) -> None:
    """A subscriber who turned a type's email off: the trigger creates it `skipped`, and the
    endpoint hears why."""
    await subscribe(herald, receiver, ["notification.skipped"], endpoints)
    sid = f"webhook-skip-{uuid.uuid4().hex[:8]}"
    admin = herald.admin()
    r = await herald.http.put(
        f"/api/subscribers/{sid}", json={"email": f"{sid}@example.com"}, headers=admin
    )
    assert r.status_code in (200, 201), r.text
    r = await herald.http.put(
        f"/api/subscribers/{sid}/preferences",
        json={"types": {"comment": {"email": False}}},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = await herald.http.post(
        "/api/notifications",
        json={
            "recipients": [{"subscriberId": sid}],
            "type": "comment",
            "title": "New comment",
            "message": "Grace: lovely work!",
            "channels": ["email"],
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    created = r.json()["notifications"][0]
    assert created["status"] == "skipped"
    got = await eventually(lambda: _async(receiver.about("email", created["notificationId"])))
    assert [d.type for d in got] == ["notification.skipped"]
    assert "email off for type comment" in got[0].data["reason"]


async def test_an_endpoint_registered_through_one_server_reaches_another_process(
    herald_factory: Any, smtp: SmtpSink, receiver: Receiver, endpoints: list[RunningHerald]
) -> None:
    """Two processes on one database and Redis (PostgreSQL: the embedded stack keeps each
    data folder's own SQLite): the one that did not take the registration picks it up when
    its cache expires, with no restart."""
    worker = await herald_factory(webhook_cache_seconds=1)
    if not worker.settings.database_url:
        pytest.skip("two processes share a database only on the services stack")
    api = await herald_factory(workers=False, webhook_cache_seconds=1)
    user = await worker.signup()
    await trigger(worker, user, ["email"])  # the worker's cache now holds "no endpoints"
    await subscribe(api, receiver, ["notification.queued"], endpoints)

    async def announced() -> list[Delivery] | None:
        ids = await trigger(worker, user, ["email"])  # made and queued by the other process
        await asyncio.sleep(0.2)
        return receiver.about("email", ids["email"]) or None

    got = await eventually(announced, timeout=20, interval=0.2)
    assert got[0].type == "notification.queued"


async def test_deleting_an_endpoint_while_a_worker_records_a_failed_delivery_does_not_deadlock(
    herald_factory: Any, stack: dict[str, Any], endpoints: list[RunningHerald]
) -> None:
    """A worker recording a failed delivery updates the row twice in one transaction; the
    second update checks the row's foreign key (a key-share lock on the endpoint). A DELETE of
    the endpoint meanwhile locked the endpoint and then waited for that delivery row: with a
    FOR UPDATE lock the two waited for each other (PostgreSQL: deadlock, a 500)."""
    if not stack:
        pytest.skip("row locks: PostgreSQL")
    herald: RunningHerald = await herald_factory(workers=False)  # the test is the worker
    endpoints.append(herald)
    endpoint = await register(herald, f"http://127.0.0.1:{free_port()}/down", ["*"])
    user = await herald.member()
    await trigger(herald, user, ["inapp"])  # a `notification.queued` delivery for it
    worker = herald.herald.engine
    async with worker.connect() as conn:
        found = await conn.exec_driver_sql(
            "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1", (endpoint["id"],)
        )
        delivery = found.scalars().first()
        assert delivery is not None
        await conn.exec_driver_sql(  # the worker's first update: the delivery row is locked
            "UPDATE webhook_deliveries SET failure_reason = 'HTTP 500' WHERE id = $1",
            (delivery,),
        )
        deleting = asyncio.create_task(
            herald.http.delete(f"/api/ops/webhooks/{endpoint['id']}", headers=herald.admin())
        )
        await asyncio.sleep(0.5)  # the DELETE holds the endpoint and waits for the row
        await conn.exec_driver_sql(  # the worker's second update: its foreign key check
            "UPDATE webhook_deliveries SET status = 'queued' WHERE id = $1", (delivery,)
        )
        await conn.commit()
    gone = await deleting
    assert gone.status_code == 200, gone.text
