"""`herald status`: every component of a deployment on one screen, or as JSON.

It describes the Herald that runs, not an assumed topology: the API servers are those named on
the command line, else those of the local `herald cluster up`, else those announcing themselves
in Redis (each API server's presence heartbeat says where it listens), and every live process
(API server or worker) publishes a telemetry snapshot each second. It asks each component
itself — each API server's `/api/health`, the load balancer (when one is named, recorded by the
cluster, or answers as HAProxy on LOAD_BALANCER_PORT), Redis, the database, the queues — and
lists what is wrong under `problems`; the command exits non-zero when that list is not empty.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from herald.cluster import haproxy
from herald.cluster.supervisor import Layout, get_json
from herald.cluster.topology import Backend, local_backends
from herald.core.config import Settings
from herald.core.redis import running_embedded_url
from herald.monitoring import conditions
from herald.monitoring.aggregator import live_snapshots
from herald.notifications.ladder import ladder
from herald.notifications.models import Channel
from herald.realtime.presence import Presence

TIMEOUT = 2.0


@dataclass(frozen=True)
class Target:
    """What to check: the servers (None: those announcing themselves in Redis), the load
    balancer, HAProxy's socket when it is local, and a port where a load balancer may run."""

    servers: Sequence[Backend] | None
    lb_url: str | None
    stats_socket: Path | None
    processes: list[dict[str, Any]]
    lb_probe: str | None = None


def target(settings: Settings, servers: Sequence[Backend] = (), lb: str | None = None) -> Target:
    """Servers named on the command line; else the cluster `herald cluster up` runs from this
    data folder; else the API servers that announce themselves in Redis, with a load balancer
    only if `--lb` names one or HAProxy answers on LOAD_BALANCER_PORT."""
    layout = Layout.of(settings)
    recorded = layout.manifest.load()
    extra = layout.manifest.extra() if recorded else {}
    processes = [
        {"name": p.name, "role": p.role, "pid": p.pid, "alive": p.alive, "log": p.log}
        for p in recorded
    ]
    if servers:
        return Target(servers, lb, None, processes)
    if recorded:
        backends = [_backend_of(s["name"], s["url"]) for s in extra.get("servers", [])]  # type: ignore[attr-defined]
        socket_path = extra.get("statsSocket")
        return Target(
            backends,
            lb or str(extra.get("loadBalancer")),
            Path(str(socket_path)) if socket_path else None,
            processes,
        )
    probe = f"http://{local_backends(settings)[0].host}:{settings.load_balancer_port}"
    return Target(None, lb, None, processes, lb_probe=None if lb else probe)


def _backend_of(name: str, url: str) -> Backend:
    parts = urlsplit(url)
    return Backend(name, parts.hostname or "127.0.0.1", parts.port or 80)


async def gather(settings: Settings, where: Target) -> dict[str, Any]:
    redis_part, database = await asyncio.gather(_redis(settings), _database(settings))
    found = await _conditions(settings, redis_part["url"], database["status"] == "up")
    backends = where.servers
    if backends is None:
        backends = [
            _announced_backend(name, info) for name, info in redis_part["announced"].items()
        ]
    lb_url = where.lb_url or (where.lb_probe and await _answers_as_balancer(where.lb_probe))
    servers, balancer = await asyncio.gather(
        asyncio.gather(*(_server(b) for b in backends)),
        _balancer(lb_url or None, where.stats_socket),
    )
    report: dict[str, Any] = {
        "checkedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataDir": str(settings.data_dir.resolve()),
        "discovered": where.servers is None,
        "loadBalancer": balancer,
        "servers": list(servers),
        "redis": redis_part["redis"],
        "database": database,
        "queues": redis_part["queues"],
        "deadLetters": redis_part["deadLetters"],
        "processes": where.processes,
        "live": redis_part["live"],
    }
    lb_view = (balancer or {}).get("servers") or {}
    heartbeats = redis_part["announced"]
    for server in report["servers"]:
        server["loadBalancer"] = lb_view.get(server["name"])
        beat = heartbeats.get(server["name"])
        server["heartbeat"] = None if beat is None else beat["alive"]
    report["problems"] = problems(report) + [
        f"{c.message} ({c.alert})"
        for c in found
        if c.severity == "critical" and c.alert not in CHECKED_HERE
    ]
    report["warnings"] = [f"{c.message} ({c.alert})" for c in found if c.severity == "warning"]
    report["ok"] = not report["problems"]
    return report


# The dashboard's conditions are this command's too: warnings are listed (exit 0), critical ones
# are problems (exit 1), except these, which `problems` reports itself with more detail.
CHECKED_HERE = frozenset({"HeraldRedisDown", "HeraldDatabaseDown", "HeraldServerHeartbeatMissing"})


def _announced_backend(server_id: str, info: dict[str, Any]) -> Backend:
    """Where an API server said it listens; one bound to every interface is reached on
    loopback from its own machine and by its host name from another."""
    host = str(info.get("host") or "127.0.0.1")
    if host in ("0.0.0.0", "", "*", "::"):
        host = "127.0.0.1" if info.get("hostname") == socket.gethostname() else info["hostname"]
    return Backend(server_id, host, int(info.get("port") or 80))


async def _answers_as_balancer(url: str) -> str | None:
    """`url` if HAProxy answers there (Herald's generated configuration adds X-Served-By-LB);
    a Herald server itself on that port (`make run` listens on 8000) is no load balancer."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=TIMEOUT) as response:  # noqa: S310
                return response.headers.get("X-Served-By-LB") is not None
        except urllib.error.HTTPError as exc:
            return exc.headers.get("X-Served-By-LB") is not None
        except (OSError, ValueError):
            return False

    return url if await asyncio.to_thread(probe) else None


async def _timed(url: str) -> tuple[int, dict[str, Any] | None, float]:
    begun = time.perf_counter()
    code, body = await asyncio.to_thread(get_json, url, TIMEOUT)
    return code, body, round((time.perf_counter() - begun) * 1000, 1)


async def _server(backend: Backend) -> dict[str, Any]:
    code, body, latency = await _timed(f"{backend.url}/api/health")
    body = body or {}
    up = code == 200
    return {
        "name": backend.name,
        "url": backend.url,
        "status": "up" if up else "down",
        "health": body.get("status"),
        "serverId": body.get("serverId"),
        "latencyMs": latency if up else None,
        "sockets": (body.get("sockets") or {}).get("connected"),
        "httpStatus": code or None,
    }


async def _balancer(lb_url: str | None, stats_socket: Path | None) -> dict[str, Any] | None:
    if not lb_url:
        return None
    code, body, latency = await _timed(f"{lb_url}/api/health")
    result: dict[str, Any] = {
        "url": lb_url,
        "status": "up" if code == 200 else "down",
        "latencyMs": latency if code == 200 else None,
        "servedBy": (body or {}).get("serverId"),
        "servers": None,
    }
    if stats_socket:
        try:
            states = await haproxy.server_states(stats_socket, TIMEOUT)
        except (OSError, TimeoutError, ValueError):
            result["status"] = "down"
        else:
            result["servers"] = {
                name: {"status": s.status, "sessions": s.current_sessions, "check": s.check}
                for name, s in states.items()
            }
    return result


async def _redis(settings: Settings) -> dict[str, Any]:
    url = settings.configured_redis_url or await asyncio.to_thread(
        running_embedded_url, settings.data_dir
    )
    embedded = settings.configured_redis_url is None
    part: dict[str, Any] = {
        "redis": None,
        "queues": [],
        "deadLetters": None,
        "announced": {},
        "live": [],
        "url": url,
    }
    if url is None:
        part["redis"] = {"status": "down", "embedded": True, "error": "no embedded Redis runs"}
        return part
    import redis.asyncio as aioredis

    from herald.delivery.queues import Queues

    client = aioredis.from_url(
        url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, decode_responses=True
    )
    queues = Queues(settings, url)
    try:
        begun = time.perf_counter()
        await asyncio.wait_for(client.ping(), TIMEOUT)
        latency = round((time.perf_counter() - begun) * 1000, 1)
        part["redis"] = {
            "status": "up",
            "latencyMs": latency,
            "url": _redact(url),
            "embedded": embedded,
        }
        counts = await asyncio.wait_for(queues.counts(), TIMEOUT * 2)
        for channel in Channel:
            for tier in ladder(settings, channel):
                # BullMQ's count of worker connections (each worker holds two).
                workers = await queues.get(tier.queue).get_workers_count()
                part["queues"].append(
                    {
                        "queue": tier.queue,
                        "channel": channel.value,
                        "tier": _tier_name(tier.index, tier.is_dead_letter),
                        "workerConnections": int(workers),
                        **counts[tier.queue],
                    }
                )
        part["deadLetters"] = {
            channel.value: counts[ladder(settings, channel)[-1].queue]["waiting"]
            for channel in Channel
        }
        part["announced"] = await Presence(client, "herald-status").announced()
        part["live"] = _live(await live_snapshots(client, time.time()))
    except Exception as exc:
        part["redis"] = {
            "status": "down",
            "url": _redact(url),
            "embedded": embedded,
            "error": type(exc).__name__,
        }
    finally:
        await queues.close()
        await client.aclose()
    return part


async def _conditions(
    settings: Settings, url: str | None, database_up: bool
) -> list[conditions.Condition]:
    """The dashboard's alert conditions, observed the same way."""
    facts = conditions.Facts(redis_up=False, database_up=database_up)
    if url is not None:
        import redis.asyncio as aioredis

        from herald.delivery.queues import Queues

        client = aioredis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, decode_responses=True
        )
        queues = Queues(settings, url)
        try:
            facts = await asyncio.wait_for(
                conditions.observe(settings, client, queues, database_up=database_up), 2 * TIMEOUT
            )
        except Exception:  # Redis stopped answering: the facts say so
            pass
        finally:
            await queues.close()
            await client.aclose()
    return conditions.evaluate(facts)


def _live(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The processes publishing telemetry right now: every running API server and worker."""
    return sorted(
        (
            {
                "serverId": s["serverId"],
                "pid": s.get("pid"),
                "api": s["roles"]["api"],
                "workers": s["roles"]["workers"],
            }
            for s in snapshots
        ),
        key=lambda p: (p["serverId"], p["pid"] or 0),
    )


def _tier_name(index: int, dead_letter: bool) -> str:
    return "dlq" if dead_letter else ("main" if index == 0 else f"retry-{index}")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _database(settings: Settings) -> dict[str, Any]:
    from herald.core.db import create_engine, ping

    engine = create_engine(settings.effective_database_url)
    try:
        begun = time.perf_counter()
        await asyncio.wait_for(ping(engine), TIMEOUT)
        latency = round((time.perf_counter() - begun) * 1000, 1)
        return {"status": "up", "dialect": engine.dialect.name, "latencyMs": latency}
    except Exception as exc:
        return {"status": "down", "dialect": engine.dialect.name, "error": type(exc).__name__}
    finally:
        await engine.dispose()


def problems(report: dict[str, Any]) -> list[str]:
    found = []
    lb = report["loadBalancer"]
    if lb and lb["status"] != "up":
        found.append(f"load balancer {lb['url']} is down")
    for s in report["servers"]:
        if s["heartbeat"] is False:
            found.append(f"{s['name']} ({s['url']}) stopped its presence heartbeat")
        elif s["status"] != "up":
            found.append(f"{s['name']} ({s['url']}) is down")
        elif s["loadBalancer"] and not str(s["loadBalancer"]["status"]).startswith("UP"):
            found.append(f"the load balancer sends no traffic to {s['name']}")
    for part in ("redis", "database"):
        if report[part]["status"] != "up":
            found.append(f"{part} is down")
    if report["discovered"] and not report["servers"] and report["redis"]["status"] == "up":
        found.append("no API server is running (none beats its presence heartbeat in Redis)")
    main_queues = [q for q in report["queues"] if q["tier"] == "main"]
    found += [
        f"no worker takes jobs from {q['queue']}" for q in main_queues if not q["workerConnections"]
    ]
    found += [
        f"{p['name']} (pid {p['pid']}) is not running"
        for p in report["processes"]
        if not p["alive"]
    ]
    return found


def render(report: dict[str, Any]) -> str:
    out = [f"Herald status at {report['checkedAt']}  (data: {report['dataDir']})", ""]
    lb = report["loadBalancer"]
    if lb:
        out.append(f"load balancer  {lb['url']:28} {lb['status']:5} {_ms(lb['latencyMs'])}")
    else:
        out.append("load balancer  none (none named with --lb, none answers on LOAD_BALANCER_PORT)")
    out.append("")
    out.append(f"{'SERVER':10} {'URL':28} {'STATE':5} {'LATENCY':>9} {'SOCKETS':>7}  LB VIEW")
    for s in report["servers"]:
        seen = s["loadBalancer"]
        view = f"{seen['status']} ({seen['sessions']} sessions, {seen['check']})" if seen else "-"
        sockets = "-" if s["sockets"] is None else str(s["sockets"])
        out.append(
            f"{s['name']:10} {s['url']:28} {s['status']:5} {_ms(s['latencyMs']):>9} "
            f"{sockets:>7}  {view}"
        )
    out.append("")
    r, d = report["redis"], report["database"]
    kind = "embedded" if r.get("embedded") else "external"
    out.append(
        f"redis     {r['status']:5} {_ms(r.get('latencyMs')):>9}  {r.get('url', '-')} ({kind})"
    )
    out.append(f"database  {d['status']:5} {_ms(d.get('latencyMs')):>9}  {d['dialect']}")
    if report["queues"]:
        out += [
            "",
            f"{'QUEUE':15} {'TIER':8} {'WAITING':>7} {'ACTIVE':>6} {'DELAYED':>7} "
            f"{'FAILED':>6} {'CONNS':>7}",
        ]
        for q in report["queues"]:
            out.append(
                f"{q['queue']:15} {q['tier']:8} {q['waiting']:>7} {q['active']:>6} "
                f"{q['delayed']:>7} {q['failed']:>6} {q['workerConnections']:>7}"
            )
        letters = report["deadLetters"]
        out.append(
            f"dead letters: email {letters['email']}, in-app {letters['inapp']}, "
            f"webhook {letters.get('webhook', 0)}"
        )
    if report["live"]:
        out += [
            "",
            "live processes: "
            + ", ".join(
                f"{p['serverId']} (pid {p['pid']}, "
                f"{' + '.join(r for r in ('api', 'workers') if p[r])})"
                for p in report["live"]
            ),
        ]
    if report["processes"]:
        out += [
            "",
            "processes: "
            + ", ".join(
                f"{p['name']} {p['pid']} {'up' if p['alive'] else 'DEAD'}"
                for p in report["processes"]
            ),
        ]
    out.append("")
    if report["warnings"]:
        out += ["WARNINGS:", *(f"  - {w}" for w in report["warnings"])]
    if report["problems"]:
        out += ["PROBLEMS:", *(f"  - {p}" for p in report["problems"])]
    else:
        out.append("nothing is down" if report["warnings"] else "all good")
    return "\n".join(out)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
