"""`herald cluster up` on real processes: three API servers, two workers, Redis and HAProxy.

Everything runs on ports chosen free at test time. The cluster is started once per stack
(embedded: SQLite + the cluster's own Redis; services: PostgreSQL + external Redis) and the
tests run in file order against it: traffic and stickiness first, then a graceful SIGTERM of
one server, then a SIGKILL of another, then `herald cluster down`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import socketio

from herald.cluster import haproxy
from herald.core.db import create_engine, create_sessionmaker
from herald.notifications.models import InAppNotification
from tests.fixtures.cluster import CHECK_FALL, CHECK_INTERVAL_MS, cluster_env
from tests.fixtures.herald import ADMIN_TOKEN
from tests.fixtures.processes import processes_of
from tests.fixtures.stacks import REDIS_URL
from tests.fixtures.waiting import eventually

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

LOAD_CLIENTS = 4  # concurrent clients hammering the load balancer during failover


# --- The cluster under test ----------------------------------------------------------------
@dataclass
class Cluster:
    data_dir: Path
    env: dict[str, str]
    lb_url: str
    database_url: str
    servers: dict[str, str] = field(default_factory=dict)  # name -> url

    def herald(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "herald", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def manifest(self) -> list[dict[str, Any]]:
        path = self.data_dir / "cluster" / "cluster.json"
        return json.loads(path.read_text())["processes"] if path.exists() else []  # type: ignore[no-any-return]

    def pid(self, name: str) -> int:
        return next(int(p["pid"]) for p in self.manifest() if p["name"] == name)

    async def lb_states(self) -> dict[str, haproxy.ServerState]:
        return await haproxy.server_states(self.data_dir / "cluster" / "haproxy.sock")

    async def notification(self, notification_id: int) -> InAppNotification | None:
        engine = create_engine(self.database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await session.get(InAppNotification, notification_id)
        finally:
            await engine.dispose()


def kill_all(data_dir: Path) -> None:
    for pid in processes_of(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module", params=["embedded", "services"])
def cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_url: str | None,
) -> Iterator[Cluster]:
    extra: dict[str, str] = {"HERALD_CLUSTER_WORKERS": "2"}
    if request.param == "services":
        if not (postgres_url and REDIS_URL):
            pytest.skip("HERALD_TEST_DATABASE_URL and HERALD_TEST_REDIS_URL not set")
        extra |= {"DATABASE_URL": postgres_url, "REDIS_URL": REDIS_URL}
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
    data_dir = tmp_path_factory.mktemp(f"cluster-{request.param}") / "data"
    env = cluster_env(data_dir, **extra)
    lb_url = f"http://127.0.0.1:{env['LOAD_BALANCER_PORT']}"
    database_url = postgres_url if request.param == "services" else None
    running = Cluster(
        data_dir, env, lb_url, database_url or f"sqlite+aiosqlite:///{data_dir / 'herald.db'}"
    )
    try:
        begun = time.monotonic()
        result = running.herald("cluster", "up")
        assert result.returncode == 0, result.stdout + result.stderr
        print(f"cluster up in {time.monotonic() - begun:.1f}s")
        running.servers = {
            f"server{i}": f"http://127.0.0.1:{env[f'SERVER{i}_PORT']}" for i in (1, 2, 3)
        }
        yield running
    finally:
        running.herald("cluster", "down", timeout=120)
        kill_all(data_dir)  # whatever `down` could not stop, even after a failed test


# --- Clients -------------------------------------------------------------------------------
class Client:
    """A python-socketio client recording what it receives. Its HTTP session keeps cookies for
    IP hosts, as a browser does (aiohttp's default jar drops them): HAProxy's stickiness for the
    polling transport depends on that cookie."""

    EVENTS = ("auth:success", "auth:error", "notification:new", "pong", "disconnect")

    def __init__(self, *, polling: bool = False, reconnection: bool = False) -> None:
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sio = socketio.AsyncClient(
            reconnection=reconnection,
            reconnection_delay=0.5,
            randomization_factor=0,
            http_session=self.http,
        )
        self.transports = ["polling"] if polling else ["websocket"]
        self.events: dict[str, asyncio.Queue[Any]] = {e: asyncio.Queue() for e in self.EVENTS}
        for name in self.EVENTS:
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any = None, *_: Any) -> None:
            await self.events[name].put(data)

        return record

    async def connect(self, url: str, token: str) -> dict[str, Any]:
        await self.sio.connect(
            url, transports=self.transports, auth={"token": token}, wait_timeout=10
        )
        return await self.next("auth:success")  # type: ignore[no-any-return]

    async def next(self, event: str, timeout: float = 15) -> Any:
        return await asyncio.wait_for(self.events[event].get(), timeout)

    async def notification(self, notification_id: int, timeout: float = 15) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                event = await self.events["notification:new"].get()
                if event["id"] == notification_id:
                    return event  # type: ignore[no-any-return]

        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        # A polling client's disconnect waits for its pending long poll; do not wait long.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 2)
        await self.http.close()


async def new_user(http: httpx.AsyncClient) -> dict[str, Any]:
    name = f"u{uuid.uuid4().hex[:10]}"
    body = {"username": name, "email": f"{name}@example.com", "password": "s3cret-pass"}
    response = await http.post("/api/signups", json=body)
    assert response.status_code == 201, response.text
    return {**response.json(), **body}


async def login(http: httpx.AsyncClient, user: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(
        "/api/logins", json={"email": user["email"], "password": user["password"]}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@dataclass
class Load:
    """Clients hammering the load balancer, each request a new client as far as HAProxy can
    tell (no cookie), recording who served what and every failure."""

    url: str
    served: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, concurrency: int = LOAD_CLIENTS) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(concurrency)]

    async def _loop(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            while not self._stop.is_set():
                http.cookies.clear()
                sent = time.monotonic()
                try:
                    response = await http.get("/api/health")
                except httpx.HTTPError as exc:
                    self.failures.append((sent, repr(exc)))
                    continue
                if response.status_code != 200:
                    self.failures.append((sent, f"HTTP {response.status_code}"))
                else:
                    self.served.append((sent, response.headers["x-served-by"]))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


# --- The tests -----------------------------------------------------------------------------
class TestLoadBalancing:
    async def test_requests_reach_all_three_servers(self, cluster: Cluster) -> None:
        async with httpx.AsyncClient(base_url=cluster.lb_url) as http:
            responses = []
            for _ in range(12):
                http.cookies.clear()  # a new client each time: round robin applies
                responses.append(await http.get("/api/health"))
        assert {r.status_code for r in responses} == {200}
        assert {r.headers["x-served-by"] for r in responses} == {"server1", "server2", "server3"}
        for r in responses:
            # HAProxy names the same server Herald says served it, and a sticky cookie for it.
            assert r.headers["x-served-by-lb"] == r.headers["x-served-by"]
            assert r.json()["serverId"] == r.headers["x-served-by"]
            assert r.cookies["SERVERID"] == r.headers["x-served-by"]
            # No X-Request-ID was sent: HAProxy made one (its unique-id format) and Herald kept it.
            assert re.fullmatch(r"[0-9A-F]{8}:[0-9A-F]{4}_[0-9A-F:_]+", r.headers["x-request-id"])
        assert len({r.headers["x-request-id"] for r in responses}) == len(responses)

    async def test_a_callers_request_id_passes_through(self, cluster: Cluster) -> None:
        async with httpx.AsyncClient(base_url=cluster.lb_url) as http:
            response = await http.get("/api/health", headers={"X-Request-ID": "trace-42.a"})
        assert response.headers["x-request-id"] == "trace-42.a"

    async def test_the_load_balancer_stage_has_haproxys_own_time(self, cluster: Cluster) -> None:
        async with httpx.AsyncClient(base_url=cluster.lb_url) as http:
            name = f"lb{uuid.uuid4().hex[:8]}"
            body = {"username": name, "email": f"{name}@example.com", "password": "pass-w0rd"}
            signup = await http.post("/api/signups", json=body)
            assert signup.status_code == 201

            async def lb_stage() -> list[dict[str, Any]]:
                # Stage events reach Redis from a background writer, a few ms after the answer.
                timeline = await http.get(
                    f"/api/ops/telemetry/{signup.headers['x-request-id']}", headers=ADMIN
                )
                assert timeline.status_code in (200, 404), timeline.text
                stages = timeline.json().get("stages", []) if timeline.status_code == 200 else []
                return [e for e in stages if e["stage"] == "load_balancer"]

            [lb] = await eventually(lb_stage, timeout=10)
        assert lb["detail"]["measured"] is True  # from X-Request-Start, set by HAProxy

    async def test_a_client_with_the_cookie_stays_on_its_server(self, cluster: Cluster) -> None:
        async with httpx.AsyncClient(base_url=cluster.lb_url) as http:
            first = await http.get("/api/health")
            rest = [await http.get("/api/health") for _ in range(6)]
        assert {r.headers["x-served-by"] for r in rest} == {first.headers["x-served-by"]}

    async def test_a_polling_client_stays_on_one_server(self, cluster: Cluster) -> None:
        async with httpx.AsyncClient(base_url=cluster.lb_url, timeout=30) as http:
            user = await new_user(http)
            session = await login(http, user)
            client = Client(polling=True)
            try:
                welcome = await client.connect(cluster.lb_url, session["sessionToken"])
                assert client.sio.transport() == "polling"
                # Every poll and post of this Engine.IO session must reach the server holding
                # it; a single one sent elsewhere would be refused and end the session.
                for _ in range(6):
                    await client.sio.emit("ping")
                    pong = await client.next("pong")
                    assert pong["serverId"] == welcome["serverId"]
                # Delivered by a worker process, through Redis, to the polling client's server.
                again = await login(http, user)
                n = again["loginInAppNotification"]["notificationId"]
                assert (await client.notification(n))["type"] == "login"
                assert client.events["disconnect"].empty()
            finally:
                await client.close()

    async def test_without_the_cookie_polling_breaks(self, cluster: Cluster) -> None:
        """The control for the test above: a client that drops the cookie (aiohttp's default
        jar ignores cookies of IP hosts) has its next poll sent to another server, which
        knows nothing of its session."""
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(cluster.lb_url, transports=["polling"], wait_timeout=2)
        await client.disconnect()

    async def test_concurrent_writes_from_every_process(self, cluster: Cluster) -> None:
        """Three API servers write signups and two workers write deliveries, all at once, on
        one database: on the embedded stack that is SQLite in WAL mode across processes."""
        count = 60
        async with httpx.AsyncClient(base_url=cluster.lb_url, timeout=60) as http:
            gate = asyncio.Semaphore(20)

            async def signup(i: int) -> httpx.Response:
                name = f"w{i}x{uuid.uuid4().hex[:6]}"
                body = {"username": name, "email": f"{name}@example.com", "password": "pass-w0rd"}
                async with gate:
                    http.cookies.clear()
                    return await http.post("/api/signups", json=body)

            responses = await asyncio.gather(*(signup(i) for i in range(count)))
            assert [r.status_code for r in responses] == [201] * count, [
                r.text for r in responses if r.status_code != 201
            ][:3]
            assert len({r.headers["x-served-by"] for r in responses}) == 3
            ids = [r.json()["userId"] for r in responses]
            assert len(set(ids)) == count

            async def all_delivered() -> bool:
                statuses = await asyncio.gather(
                    *(
                        http.get(f"/api/signups/{i}/welcome-email-status", headers=ADMIN)
                        for i in ids
                    )
                )
                return all(s.json()["welcomeEmail"]["status"] == "delivered" for s in statuses)

            await eventually(all_delivered, timeout=90, interval=0.5)
        logs = "".join(p.read_text() for p in (cluster.data_dir / "cluster" / "logs").iterdir())
        assert "database is locked" not in logs

    def test_status_reports_everything_up(self, cluster: Cluster) -> None:
        result = cluster.herald("status", "--json")
        report = json.loads(result.stdout)
        assert result.returncode == 0, report["problems"]
        assert [s["status"] for s in report["servers"]] == ["up"] * 3
        assert {s["serverId"] for s in report["servers"]} == {"server1", "server2", "server3"}
        assert {s["loadBalancer"]["status"] for s in report["servers"]} == {"UP"}
        assert report["loadBalancer"]["status"] == "up"
        assert report["redis"]["status"] == report["database"]["status"] == "up"
        assert [q["queue"] for q in report["queues"]] == [
            "mail",
            "mail-retry-1",
            "mail-retry-2",
            "mail-dlq",
            "inapp",
            "inapp-retry-1",
            "inapp-retry-2",
            "inapp-dlq",
            "webhook",
            "webhook-retry-1",
            "webhook-retry-2",
            "webhook-dlq",
        ]
        assert set(report["queues"][0]) >= {"waiting", "active", "delayed", "failed"}
        assert report["deadLetters"] == {"email": 0, "inapp": 0, "webhook": 0}
        expected = {"server1", "server2", "server3", "worker1", "worker2", "haproxy"}
        if "REDIS_URL" not in cluster.env:
            expected.add("redis")  # the cluster's own embedded Redis
        assert {p["name"] for p in report["processes"]} == expected
        assert all(p["alive"] for p in report["processes"])
        text = cluster.herald("status")
        assert text.returncode == 0 and "all good" in text.stdout


class TestGracefulShutdown:
    async def test_sigterm_moves_sockets_to_another_server(self, cluster: Cluster) -> None:
        """SIGTERM: the server stops listening and closes its sockets at once (a long poll is
        answered, not held), clients reconnect through HAProxy elsewhere, no request fails."""
        async with httpx.AsyncClient(base_url=cluster.lb_url, timeout=30) as http:
            user = await new_user(http)
            token = (await login(http, user))["sessionToken"]
        client = Client(polling=True, reconnection=True)
        load = Load(cluster.lb_url)
        try:
            victim = (await client.connect(cluster.lb_url, token))["serverId"]
            load.start()
            await asyncio.sleep(0.5)
            pid = cluster.pid(victim)
            os.kill(pid, signal.SIGTERM)
            begun = time.monotonic()
            await client.next("disconnect", timeout=10)
            closed_after = time.monotonic() - begun
            moved = await client.next("auth:success", timeout=15)

            async def gone() -> bool:
                return not _alive(pid)

            await eventually(gone, timeout=30)
            await asyncio.sleep(CHECK_INTERVAL_MS * CHECK_FALL / 1000 + 0.5)
        finally:
            await load.stop()
            await client.close()
        print(f"{victim} closed its sockets {closed_after:.2f}s after SIGTERM")
        # Without the close, the long poll would be held until uvicorn's graceful timeout (10 s)
        # or the heartbeat (30 s).
        assert closed_after < 5
        assert moved["serverId"] != victim
        assert load.failures == []
        assert len(load.served) > 20


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Failover:
    victim: str
    killed_at: float
    out_after: float  # seconds from SIGKILL until HAProxy marked the victim DOWN
    load: Load
    auto_moved: dict[str, Any]  # auth:success the auto-reconnecting client got afterwards
    auto_client: Client
    auto_user: dict[str, Any]
    away_client: Client  # reconnected by hand, after a notification was sent while away
    away_moved: dict[str, Any]
    missed_id: int
    missed_row_status: str


@pytest.fixture(scope="class")
async def failover(cluster: Cluster) -> AsyncIterator[Failover]:
    """Kill, with SIGKILL, the server that two socket clients are connected to, under load."""
    http = httpx.AsyncClient(base_url=cluster.lb_url, timeout=30)
    away_user, auto_user = await new_user(http), await new_user(http)
    away_token = (await login(http, away_user))["sessionToken"]
    auto_token = (await login(http, auto_user))["sessionToken"]
    clients: list[Client] = []
    load = Load(cluster.lb_url)
    try:
        away = Client(polling=True)  # reconnected by the test once it has missed something
        clients.append(away)
        victim = (await away.connect(cluster.lb_url, away_token))["serverId"]
        for _ in range(8):  # round robin: put the auto-reconnecting client on the same server
            auto = Client(reconnection=True)
            clients.append(auto)
            if (await auto.connect(cluster.lb_url, auto_token))["serverId"] == victim:
                break
            await auto.close()
        else:
            raise AssertionError(f"no websocket client landed on {victim}")

        load.start()
        await asyncio.sleep(0.5)
        pid = cluster.pid(victim)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        async def taken_out() -> bool:
            return not (await cluster.lb_states())[victim].up

        await eventually(taken_out, timeout=10, interval=0.02)
        out_after = time.monotonic() - killed_at

        # The polling client lost its server. While it is away, a login sends it an in-app
        # notification; the worker tries it once before the client comes back.
        await away.next("disconnect", timeout=40)
        missed = (await login(http, away_user))["loginInAppNotification"]["notificationId"]

        async def attempted() -> InAppNotification | None:
            row = await cluster.notification(missed)
            return row if row and row.attempts >= 1 else None

        row = await eventually(attempted, timeout=20)
        await away.close()
        back = Client(polling=True)
        clients.append(back)
        away_moved = await back.connect(cluster.lb_url, away_token)
        auto_moved = await auto.next("auth:success", timeout=20)
        await asyncio.sleep(1)  # keep the load on after the server is out
        await load.stop()
        yield Failover(
            victim,
            killed_at,
            out_after,
            load,
            auto_moved,
            auto,
            auto_user,
            back,
            away_moved,
            missed,
            row.status,
        )
    finally:
        if not load._stop.is_set():
            await load.stop()
        for client in clients:
            await client.close()
        await http.aclose()


class TestFailover:
    async def test_killed_server_is_taken_out_within_the_check_window(
        self, failover: Failover
    ) -> None:
        window = CHECK_INTERVAL_MS * CHECK_FALL / 1000
        print(f"{failover.victim} marked DOWN {failover.out_after:.2f}s after SIGKILL")
        assert failover.out_after <= window + 1.0
        taken_out_at = failover.killed_at + failover.out_after
        after = {by for at, by in failover.load.served if at > taken_out_at}
        assert failover.victim not in after and after, after

    async def test_no_request_sent_after_the_kill_fails(self, failover: Failover) -> None:
        """Requests that reach the dead server before HAProxy takes it out are retried on
        another. The one thing no load balancer can retry is an answer the server had begun to
        send when it died (uvicorn writes the head and the body separately): only a request
        already in flight at the SIGKILL may be cut, so at most one per load client."""
        after = [s for s in failover.load.served if s[0] > failover.killed_at]
        failures = failover.load.failures
        print(f"{len(after)} requests after the kill, {len(failures)} failed: {failures}")
        assert len(after) > 20
        assert len(failures) <= LOAD_CLIENTS
        for sent, error in failures:
            assert sent < failover.killed_at and "RemoteProtocolError" in error, (sent, error)

    async def test_socket_clients_reconnect_through_haproxy_elsewhere(
        self, cluster: Cluster, failover: Failover
    ) -> None:
        assert failover.auto_moved["serverId"] != failover.victim
        assert failover.away_moved["serverId"] != failover.victim
        # and the reconnected client receives what is sent now, on its new server
        async with httpx.AsyncClient(base_url=cluster.lb_url, timeout=30) as http:
            again = await login(http, failover.auto_user)
        n = again["loginInAppNotification"]["notificationId"]
        assert (await failover.auto_client.notification(n))["type"] == "login"

    async def test_what_was_sent_while_away_arrives_through_catch_up(
        self, failover: Failover
    ) -> None:
        # The ladder would wait minutes (INAPP_RETRY_1_DELAY, HERALD_BACKOFF_DELAY): only
        # catch-up on authenticate can bring it within this test.
        event = await failover.away_client.notification(failover.missed_id, timeout=10)
        assert event["type"] == "login"

    def test_status_reports_the_dead_server_and_exits_non_zero(
        self, cluster: Cluster, failover: Failover
    ) -> None:
        result = cluster.herald("status", "--json")
        assert result.returncode == 1
        report = json.loads(result.stdout)
        dead = next(s for s in report["servers"] if s["name"] == failover.victim)
        assert dead["status"] == "down"
        assert dead["loadBalancer"]["status"] == "DOWN"
        assert any(failover.victim in problem for problem in report["problems"])
        text = cluster.herald("status")
        assert text.returncode == 1 and "PROBLEMS" in text.stdout


class TestDown:
    def test_down_stops_exactly_what_up_started(self, cluster: Cluster) -> None:
        pids = [int(p["pid"]) for p in cluster.manifest()]
        assert pids
        result = cluster.herald("cluster", "down")
        assert result.returncode == 0, result.stderr
        assert [pid for pid in pids if _alive(pid)] == []
        assert processes_of(cluster.data_dir) == []
        assert not (cluster.data_dir / "cluster" / "cluster.json").exists()
        assert "no cluster is running" in cluster.herald("cluster", "down").stdout
