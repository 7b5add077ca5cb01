"""The scenarios. Each starts a fresh stack, loads it from agent processes, and returns its
figures: a flat dict of numbers (the report knows their targets)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from herald.bench import costs, timelines
from herald.bench.agent import Agent, call_all
from herald.bench.ceiling import ceiling_agent
from herald.bench.http import http_agent
from herald.bench.peer import PeerStack
from herald.bench.sink import sink_agent
from herald.bench.sockets import swarm_agent
from herald.bench.stack import BenchStack, Proc
from herald.core.redis import free_port

Figures = dict[str, Any]
People = list[tuple[int, str]]  # (user id, session token)
# Sockets per load-generating process: fewer for clients that receive and acknowledge.
ACTIVE_PER_AGENT = 1000
IDLE_PER_AGENT = 2500


@dataclass(frozen=True)
class Sizes:
    ingest_seconds: float
    ingest_concurrency: int
    clients: int
    rate: float
    inapp_seconds: float
    inapp_drain: int
    emails: int
    socket_levels: tuple[int, ...]
    ceiling_jobs: int
    ceiling_emits: int
    quiet_gaps: tuple[float, ...]
    knee_rates: tuple[int, ...]
    knee_seconds: float

    @classmethod
    def of(cls, quick: bool, clients: int = 2000, rate: float = 300) -> Sizes:
        if quick:
            return cls(
                4,
                16,
                min(clients, 200),
                min(rate, 100),
                4,
                500,
                500,
                (500, 1000),
                3000,
                3000,
                (0.5, 6),
                (50, 100),
                3,
            )
        return cls(
            20,
            32,
            clients,
            rate,
            20,
            5000,
            5000,
            (5000, 10000),
            20000,
            20000,
            (0.5, 2, 6, 15, 30, 60),
            (50, 100, 150, 200, 300, 400, 600, 800, 1200),
            10,
        )


@dataclass
class Context:
    work_dir: Path
    database_url: str | None
    redis_url: str | None
    sizes: Sizes
    sink: Agent
    smtp_port: int
    say: Callable[[str], None]
    profile_dir: Path | None = None
    # The peer's prepared folder: when set, `running` starts the peer instead of Herald.
    peer: Path | None = None


@contextlib.asynccontextmanager
async def running(ctx: Context, name: str) -> AsyncIterator[BenchStack]:
    if ctx.peer is not None:
        stack: BenchStack = PeerStack(
            ctx.work_dir / f"peer-{name}",
            folder=ctx.peer,
            database_url=ctx.database_url,
            smtp_port=ctx.smtp_port,
        )
    else:
        stack = BenchStack(
            ctx.work_dir / name,
            database_url=ctx.database_url,
            redis_url=ctx.redis_url,
            smtp_port=ctx.smtp_port,
            profile_dir=ctx.profile_dir,
        )
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@contextlib.asynccontextmanager
async def agents(kind: Callable[..., None], count: int, name: str) -> AsyncIterator[list[Agent]]:
    started = [Agent(f"{name}{i}", kind) for i in range(count)]
    try:
        yield started
    finally:
        for agent in started:
            await asyncio.to_thread(agent.stop)


def percentiles(seconds: list[float], prefix: str) -> Figures:
    """p50/p95/p99 in milliseconds (nearest rank)."""
    ordered = sorted(seconds)
    out: Figures = {}
    for q in (50, 95, 99):
        value = ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)] if ordered else None
        out[f"{prefix}p{q}Ms"] = None if value is None else round(value * 1000, 2)
    return out


def url(proc: Proc) -> str:
    return f"http://127.0.0.1:{proc.port}"


# --- ingest -----------------------------------------------------------------------------------
async def ingest(ctx: Context) -> Figures:
    """Triggers/s through the API at a fixed concurrency. No worker runs: this is the API
    storing each notification and queuing its job (delivery is measured by the drains)."""
    s = ctx.sizes
    async with running(ctx, "ingest") as stack, agents(http_agent, 1, "http") as (http,):
        api = await stack.api()
        users = [uid for uid, _ in await stack.users(100)]
        args = dict(
            url=url(api),
            token=stack.admin_token,
            users=users,
            channels=["inapp"],
            concurrency=s.ingest_concurrency,
        )
        await http.call("ingest", seconds=1.0, **args)  # warm-up
        cpu0 = api.cpu_seconds
        run = await http.call("ingest", seconds=s.ingest_seconds, **args)
        api_cpu = (api.cpu_seconds - cpu0) / run["seconds"]
    ok = run["statuses"].get(201, 0)
    return {
        "perSecond": round(ok / run["seconds"], 1),
        **percentiles(run["latencies"], ""),
        "errors": sum(n for status, n in run["statuses"].items() if status != 201),
        "concurrency": s.ingest_concurrency,
        "apiCpuShare": round(api_cpu, 2),
        "loadgenCpuShare": round(run["cpuSeconds"] / run["seconds"], 2),
    }


# --- in-app: latency at a fixed rate, then a drain --------------------------------------------
@dataclass
class Live:
    """A stack with one API and one worker process, and signed-in sockets that acknowledge
    what they receive, spread over load-generating agents."""

    stack: BenchStack
    api: Proc
    worker: Proc
    http: Agent
    swarms: list[Agent]
    shares: list[People]  # each swarm's users
    connected: int

    @property
    def users(self) -> list[int]:
        return [uid for share in self.shares for uid, _ in share]


@contextlib.asynccontextmanager
async def live(ctx: Context, name: str) -> AsyncIterator[Live]:
    s = ctx.sizes
    swarms_needed = math.ceil(s.clients / ACTIVE_PER_AGENT)
    async with (
        running(ctx, name) as stack,
        agents(http_agent, 1, "http") as (http,),
        agents(swarm_agent, swarms_needed, "swarm") as swarms,
    ):
        api = await stack.api()
        worker = await stack.worker()
        people = await stack.users(s.clients)
        shares = [people[i :: len(swarms)] for i in range(len(swarms))]
        ctx.say(f"  connecting {s.clients} clients")
        connected = await _connect(
            swarms, url(api), [[{"token": t} for _, t in share] for share in shares]
        )
        yield Live(stack, api, worker, http, swarms, shares, connected)


async def at_rate(on: Live, rate: float, seconds: float) -> tuple[Figures, float]:
    """Notifications at `rate` for `seconds`, each to one of the users in turn: what arrived,
    trigger → socket latency, the requests' latency; and the load generators' CPU share."""
    users = on.users
    await call_all(on.swarms, "watch", event="notification:new", ack=True)  # count afresh
    run = await on.http.call(
        "at_rate",
        url=url(on.api),
        token=on.stack.admin_token,
        users=users,
        channels=["inapp"],
        rate=rate,
        seconds=seconds,
    )
    owner = {uid: i for i, share in enumerate(on.shares) for uid, _ in share}
    accepted = [(seq, sent) for seq, sent, status in run["sends"] if status == 201]
    expected = [0] * len(on.swarms)
    for seq, _ in accepted:
        expected[owner[users[seq % len(users)]]] += 1
    # Past 15 s, keep waiting while anything still arrives within 20 s: an overloaded API
    # leaves some enqueues to the reconciler (every 10 s, after a 5 s grace), and those
    # notifications count, late, rather than vanish from the figures.
    arrivals = [
        await sw.call("wait_for", count=n, timeout=15, quiet=20)
        for sw, n in zip(on.swarms, expected, strict=True)
    ]
    sent_at = dict(accepted)
    latencies = [t - sent_at[seq] for a in arrivals for seq, t in a["seen"] if seq in sent_at]
    loadgen = max([run["cpuSeconds"]] + [a["cpuSeconds"] for a in arrivals]) / run["seconds"]
    figures: Figures = {
        "sent": len(accepted),
        "arrived": sum(a["count"] for a in arrivals),
        "sendErrors": len(run["sends"]) - len(accepted),
        **percentiles(latencies, ""),
        **percentiles(run["latencies"], "request"),
    }
    return figures, loadgen


async def inapp(ctx: Context) -> Figures:
    s = ctx.sizes
    async with live(ctx, "inapp") as on:
        ctx.say(f"  {s.rate:.0f} notifications/s for {s.inapp_seconds:.0f} s")
        before = await costs.read(on.stack, [on.api, on.worker])
        phase, loadgen = await at_rate(on, s.rate, s.inapp_seconds)
        after = await costs.settled(on.stack, [on.api, on.worker])
        figures: Figures = {
            "clients": on.connected,
            "rate": s.rate,
            **phase,
            "loadgenCpuShare": round(loadgen, 2),
            **costs.per_notification(before, after, phase["sent"]),
        }
        if ctx.peer is None:  # where the latency went, from Herald's own timelines
            for leg, seconds in (await timelines.legs(on.stack.redis_url)).items():
                figures.update(percentiles(seconds, leg))
        ctx.say(f"  drain: {s.inapp_drain} in-app notifications into one worker process")
        figures.update(await _drain_inapp(ctx, on))
    return figures


# --- in-app: the rate where the p99 crosses 100 ms --------------------------------------------
KNEE_P99_MS = 100.0


async def knee(ctx: Context) -> Figures:
    """In-app notifications at rising rates on one stack (the in-app scenario's sockets, one
    API and one worker process) until trigger → socket p99 reaches 100 ms: `kneeRate` is the
    highest rate that stayed under (0 if none did), with each step's p50 and p99."""
    s = ctx.sizes
    figures: Figures = {"kneeRate": 0}
    async with live(ctx, "knee") as on:
        for rate in s.knee_rates:
            ctx.say(f"  {rate}/s for {s.knee_seconds:.0f} s")
            phase, _ = await at_rate(on, rate, s.knee_seconds)
            figures[f"p50MsAt{rate}"], figures[f"p99MsAt{rate}"] = phase["p50Ms"], phase["p99Ms"]
            under = phase["p99Ms"] is not None and phase["p99Ms"] < KNEE_P99_MS
            if not under or phase["arrived"] < phase["sent"] or phase["sendErrors"]:
                break
            figures["kneeRate"] = rate
    return figures


async def _connect(
    swarms: list[Agent],
    target: str,
    auths: list[list[Any]],
    ready_event: str | None = "auth:success",
) -> int:
    for swarm, share in zip(swarms, auths, strict=True):
        swarm.send("connect", url=target, auths=share, ready_event=ready_event)
    results = [await sw.reply() for sw in swarms]
    failed = [r for r in results if r["failed"]]
    if failed:
        raise RuntimeError(
            f"{sum(r['failed'] for r in failed)} sockets failed to connect: "
            f"{failed[0]['firstFailure']}"
        )
    return sum(r["connected"] for r in results)


def _batches(recipients: list[dict[str, Any]], channel: str, size: int = 500) -> list[Any]:
    return [
        {
            "recipients": recipients[i : i + size],
            "type": "bench",
            "title": "Drain",
            "message": "drain",
            "channels": [channel],
            "data": {"drain": True},
        }
        for i in range(0, len(recipients), size)
    ]


async def _queued(http: Agent, api: Proc, stack: BenchStack, bodies: list[Any]) -> int:
    statuses = await http.call("post_all", url=url(api), token=stack.admin_token, bodies=bodies)
    refused = [status for status in statuses if not 200 <= status < 300]
    if refused:
        raise RuntimeError(
            f"{len(refused)} of {len(bodies)} drain requests were refused "
            f"(statuses {sorted(set(refused))}; 0: no answer in 30 s)"
        )
    return sum(len(b["recipients"]) for b in bodies)


async def _per_worker(
    stack: BenchStack, measure: Callable[[], Awaitable[list[Figures]]], count: int
) -> Figures:
    """Start one worker on a full queue; the rate between the first and the last arrival."""
    worker = await stack.worker("drain-worker")
    cpu0, t0 = worker.cpu_seconds, time.monotonic()
    results = await measure()
    cpu = (worker.cpu_seconds - cpu0) / (time.monotonic() - t0)
    arrived = sum(r["count"] for r in results)
    first = min(r["first"] for r in results if r["count"])
    last = max(r["last"] for r in results)
    return {
        "drained": arrived,
        "of": count,
        "perSecond": round((arrived - 1) / max(last - first, 1e-9), 1),
        "workerCpuShare": round(cpu, 2),
    }


async def _drain_inapp(ctx: Context, on: Live) -> Figures:
    on.worker.stop()
    users = on.users
    per_user = max(1, ctx.sizes.inapp_drain // len(users))
    recipients = [{"userId": u} for u in users] * per_user
    count = await _queued(on.http, on.api, on.stack, _batches(recipients, "inapp"))
    await call_all(on.swarms, "watch", event="notification:new", ack=True)

    async def measure() -> list[Figures]:
        for swarm, share in zip(on.swarms, on.shares, strict=True):
            swarm.send("wait_for", count=per_user * len(share), timeout=120)
        return [await swarm.reply() for swarm in on.swarms]

    drained = await _per_worker(on.stack, measure, count)
    return {f"drain{k[0].upper()}{k[1:]}": v for k, v in drained.items()}


# --- email drain ------------------------------------------------------------------------------
async def email(ctx: Context) -> Figures:
    """Messages/s one worker process hands to the SMTP sink, starting on a full queue."""
    n = ctx.sizes.emails
    async with running(ctx, "email") as stack, agents(http_agent, 1, "http") as (http,):
        api = await stack.api()
        recipients = [{"userId": uid} for uid, _ in await stack.users(n)]
        count = await _queued(http, api, stack, _batches(recipients, "email"))
        await ctx.sink.call("reset")

        async def measure() -> list[Figures]:
            return [await ctx.sink.call("wait_for", count=count, timeout=300)]

        figures = await _per_worker(stack, measure, count)
        sink = await ctx.sink.call("wait_for", count=0, timeout=0)
        span = max(sink["last"] - sink["first"], 1e-9)
    return {**figures, "sinkCpuShare": round(sink["cpuSeconds"] / span, 2)}


# --- sockets ----------------------------------------------------------------------------------
async def sockets(ctx: Context) -> Figures:
    """Resident memory per idle authenticated socket in one API server process."""
    levels = ctx.sizes.socket_levels
    top = max(levels)
    count = math.ceil(top / IDLE_PER_AGENT)
    async with running(ctx, "sockets") as stack, agents(swarm_agent, count, "swarm") as swarms:
        api = await stack.api()
        people = await stack.users(top)
        await asyncio.sleep(2)
        base = api.rss_bytes
        figures: Figures = {"baseRssMb": round(base / 2**20, 1)}
        done = 0
        for level in sorted(levels):
            ctx.say(f"  {level} sockets")
            batch = people[done:level]
            shares = [[{"token": t} for _, t in batch[i::count]] for i in range(count)]
            started, cpu0 = time.monotonic(), api.cpu_seconds
            done += await _connect(swarms, url(api), shares)
            figures[f"connectPerSecond{level}"] = round(len(batch) / (time.monotonic() - started))
            # What a connect costs the API in CPU: steadier than the rate on a shared machine.
            figures[f"apiCpuMsPerConnect{level}"] = round(
                (api.cpu_seconds - cpu0) / len(batch) * 1000, 2
            )
            await asyncio.sleep(3)  # let the server settle: idle sockets, nothing in flight
            rss = api.rss_bytes
            figures[f"rssMb{level}"] = round(rss / 2**20, 1)
            figures[f"kbPerSocket{level}"] = round((rss - base) / done / 1024, 1)
        figures |= await _drop_all(swarms, api, done)
    # The figure held against the target: the largest level.
    figures["sockets"], figures["kbPerSocket"] = top, figures[f"kbPerSocket{top}"]
    return figures


async def _drop_all(swarms: list[Agent], api: Proc, count: int) -> Figures:
    """Every client drops at once (a load balancer reloaded, a network blip): the seconds until
    the API has let them all go, and its CPU per disconnect. Nothing for a stack whose health
    does not count its sockets (the peer's)."""
    if await _sockets_connected(api) is None:
        return {}
    started, cpu0 = time.monotonic(), api.cpu_seconds
    await call_all(swarms, "close")
    while (await _sockets_connected(api) or 0) > 0:
        if time.monotonic() - started > 300:
            raise RuntimeError("the API still held sockets 300 s after every client closed")
        await asyncio.sleep(0.1)
    return {
        "dropAllSeconds": round(time.monotonic() - started, 2),
        "apiCpuMsPerDisconnect": round((api.cpu_seconds - cpu0) / count * 1000, 3),
    }


async def _sockets_connected(api: Proc) -> int | None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url(api)}/api/health") as response,
    ):
        body = await response.json()
    connected = body.get("sockets", {}).get("connected")
    return connected if isinstance(connected, int) else None


# --- ceiling ----------------------------------------------------------------------------------
async def ceiling(ctx: Context) -> Figures:
    s = ctx.sizes
    async with (
        running(ctx, "ceiling") as stack,
        agents(ceiling_agent, 1, "ceiling") as (engine,),
        agents(swarm_agent, 1, "swarm") as (swarm,),
    ):
        ctx.say(f"  BullMQ: {s.ceiling_jobs} no-op jobs")
        bull = await engine.call(
            "bullmq", redis_url=stack.redis_url, jobs=s.ceiling_jobs, concurrency=10
        )
        port = free_port()
        await engine.call("serve_bare", port=port)
        ctx.say(f"  python-socketio: {s.ceiling_emits} emits to 100 sockets")
        await _connect([swarm], f"http://127.0.0.1:{port}", [[None] * 100], ready_event=None)
        await swarm.call("watch", event="tick")
        await swarm.call("emit", name="blast", data={"n": s.ceiling_emits})
        ticks = await swarm.call("wait_for", count=s.ceiling_emits, timeout=120)
    span = max(ticks["last"] - ticks["first"], 1e-9)
    return {
        "bullmqJobsPerSecond": round(bull["perSecond"], 1),
        "bullmqCpuShare": round(bull["cpuSeconds"] / bull["seconds"], 2),
        "socketioEmitsPerSecond": round((ticks["count"] - 1) / span, 1),
        "socketioArrived": ticks["count"],
        "loadgenCpuShare": round(ticks["cpuSeconds"] / span, 2),
    }


# --- quiet: one notification after each silence ----------------------------------------------
async def quiet(ctx: Context) -> Figures:
    """Trigger → `notification:new` for one notification after each quiet gap: what a system
    with a few notifications a minute shows its users. Workers must wake at once."""
    async with (
        running(ctx, "quiet") as stack,
        agents(http_agent, 1, "http") as (http,),
        agents(swarm_agent, 1, "swarm") as (swarm,),
    ):
        api = await stack.api()
        await stack.worker()
        [(user, token)] = await stack.users(1)
        await _connect([swarm], url(api), [[{"token": token}]])
        await swarm.call("watch", event="notification:new", ack=True)
        latencies: list[float] = []
        figures: Figures = {}
        for count, gap in enumerate((1.0, *ctx.sizes.quiet_gaps), start=1):  # 1 s: warm-up
            ctx.say(f"  one notification after {gap:g} s of quiet")
            await asyncio.sleep(gap)
            run = await http.call(
                "at_rate",
                url=url(api),
                token=stack.admin_token,
                users=[user],
                channels=["inapp"],
                rate=1,
                seconds=1,
            )
            arrivals = await swarm.call("wait_for", count=count, timeout=30, quiet=1)
            [(_, sent, _)] = run["sends"]
            if count > 1:
                latencies.append(arrivals["last"] - sent)
                figures[f"after{gap:g}sMs"] = round(latencies[-1] * 1000, 1)
    figures["worstMs"] = round(max(latencies) * 1000, 1)
    return figures


SCENARIOS: dict[str, Callable[[Context], Awaitable[Figures]]] = {
    "ingest": ingest,
    "inapp": inapp,
    "knee": knee,
    "email": email,
    "sockets": sockets,
    "ceiling": ceiling,
    "quiet": quiet,
}


async def start_sink() -> tuple[Agent, int]:
    sink = Agent("smtp-sink", sink_agent)
    return sink, await sink.call("start")
