"""The `herald` command."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import uvloop

from herald.core import heap
from herald.core.config import Settings, SettingsError, load_settings
from herald.core.logging import configure_logging

if TYPE_CHECKING:
    from herald.cluster.topology import Backend
    from herald.runtime import Herald

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    return settings


@click.group()
@click.version_option(package_name="herald")
def main() -> None:
    """Herald: real-time notifications by email and in-app, with a retry ladder and dead letters."""
    # What Herald writes (the database, the embedded Redis's append-only file, the mailbox,
    # logs) is for the user running it alone; child processes (redis-server, the cluster's
    # servers and workers) inherit this.
    os.umask(os.umask(0o077) | 0o077)


def _run_http(settings: Settings, *, workers: bool) -> None:
    from herald.runtime import Herald
    from herald.server.app import create_app
    from herald.server.http import GracefulServer, server_config

    herald = Herald(settings, api=True, workers=workers)
    app = create_app(herald)
    click.echo(_banner(settings, workers=workers))
    GracefulServer(server_config(app, settings), herald.sio).run()


def _banner(settings: Settings, *, workers: bool) -> str:
    role = "API + workers" if workers else "API"
    database = settings.database_url and "PostgreSQL" or f"SQLite in {settings.data_dir}/"
    redis = "external Redis" if settings.configured_redis_url else "embedded Redis"
    email = f"SMTP {settings.email_host}" if settings.email_host else "capture mailbox"
    token = "" if settings.admin_token else f"\n  admin token: {settings.data_dir}/admin-token"
    return (
        f"Herald ({role}) on http://{settings.host}:{settings.port}\n"
        f"  {database}, {redis}, {email}{token}"
    )


@main.command()
@click.option("--host", default=None, help="Interface to listen on (HERALD_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (PORT).")
def serve(host: str | None, port: int | None) -> None:
    """API, Socket.IO and every queue worker in one process: the embedded default."""
    _run_http(_settings(host=host, port=port), workers=True)


@main.command()
@click.option("--host", default=None, help="Interface to listen on (HERALD_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (PORT).")
def api(host: str | None, port: int | None) -> None:
    """One API + Socket.IO server without queue workers."""
    _run_http(_settings(host=host, port=port), workers=False)


@main.command()
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve this process's Prometheus metrics at http://HERALD_HOST:PORT/metrics.",
)
def worker(metrics_port: int | None) -> None:
    """Queue workers only."""
    settings = _settings()
    # uvloop, as uvicorn picks for `herald api`: the worker's loop runs every job's Redis and
    # database round trips, and uvloop's are cheaper.
    uvloop.run(_run_workers(settings, metrics_port))


async def _run_workers(settings: Settings, metrics_port: int | None = None) -> None:
    from herald.runtime import Herald

    herald = Herald(settings, api=False, workers=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await herald.start()
    heap.settle()
    exporter = None
    if metrics_port is not None:
        from prometheus_client import start_http_server

        exporter, _ = start_http_server(
            metrics_port, settings.host, registry=herald.telemetry.metrics.registry
        )
    click.echo(f"Herald workers running ({settings.effective_server_id})")
    try:
        await stop.wait()
    finally:
        if exporter is not None:
            exporter.shutdown()
        await herald.stop()


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    from herald.core.db import run_migrations

    settings = _settings()
    run_migrations(settings.effective_database_url)
    click.echo("database is at the newest revision")


# --- Dead letters ---------------------------------------------------------------------------
CHANNEL = click.Choice(["email", "inapp", "webhook"])


def _with_herald(work: Callable[[Herald], Awaitable[T]]) -> T:
    """Run `work` against this installation's database and Redis, with no server or worker."""
    from herald.runtime import Herald

    async def run() -> T:
        settings = _settings()
        configure_logging("warning")  # keep a command's output readable
        herald = Herald(settings, api=False, workers=False)
        await herald.start()
        try:
            return await work(herald)
        finally:
            await herald.stop()

    return asyncio.run(run())


@main.group()
def dlq() -> None:
    """Review dead letters: list, show, replay, discard."""


@dlq.command("list")
@click.option("--channel", type=CHANNEL, help="Only this channel (default: all).")
@click.option("--type", "kind", help="Only this notification type (signup, login, ...).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dlq_list(channel: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    from herald.core.pagination import PageParams
    from herald.notifications.models import Channel

    channels = [Channel(channel)] if channel else list(Channel)

    async def work(herald: Herald) -> list[Any]:
        found = []
        for ch in channels:
            page = await herald.dead_letters.page(ch, PageParams(1, limit), kind=kind)
            found.extend(page.items)
        return found

    letters = _with_herald(work)
    if as_json:
        click.echo(
            json.dumps([d.model_dump(mode="json", by_alias=True) for d in letters], indent=2)
        )
        return
    if not letters:
        click.echo("no dead letters")
        return
    click.echo(
        f"{'CHANNEL':7} {'ID':>7} {'TYPE':14} {'ATTEMPTS':>8} {'FAILED AT':20} RECIPIENT / REASON"
    )
    for d in letters:
        failed = d.failed_at.strftime("%Y-%m-%d %H:%M:%S") if d.failed_at else "-"
        click.echo(
            f"{d.channel.value:7} {d.notification_id:>7} {d.type:14} {d.attempts:>8} {failed:20} "
            f"{d.recipient or '-'} / {(d.failure_reason or '')[:80]}"
        )


@dlq.command("show")
@click.argument("channel", type=CHANNEL)
@click.argument("notification_id", type=int)
def dlq_show(channel: str, notification_id: int) -> None:
    """Print one notification's whole story as JSON."""
    from herald.notifications.models import MODEL_OF, Channel
    from herald.notifications.schemas import tracking

    ch = Channel(channel)

    async def work(herald: Herald) -> Any:
        async with herald.db() as session:
            n = await session.get(MODEL_OF[ch], notification_id)
            return None if n is None else (await tracking(session, [n]))[(ch, n.id)]

    block = _with_herald(work)
    if block is None:
        click.echo(f"herald: no {channel} notification {notification_id}", err=True)
        sys.exit(1)
    click.echo(json.dumps(block.model_dump(mode="json", by_alias=True), indent=2))


@main.group()
def notifications() -> None:
    """Read notifications: one whole record, as the API gives it."""


@notifications.command("show")
@click.argument("channel", type=CHANNEL)
@click.argument("notification_id", type=int)
def notifications_show(channel: str, notification_id: int) -> None:
    """Print every field of one notification (recipient, content, state, audit trail) as JSON."""
    from herald.notifications.models import Channel
    from herald.trigger import records

    async def work(herald: Herald) -> Any:
        async with herald.db() as session:
            n = await records.load(session, Channel(channel), notification_id)
            return None if n is None else await records.record(session, n)

    found = _with_herald(work)
    if found is None:
        click.echo(f"herald: no {channel} notification {notification_id}", err=True)
        sys.exit(1)
    click.echo(json.dumps(found.model_dump(mode="json", by_alias=True), indent=2))


def _selection(ids: tuple[int, ...], all_: bool) -> list[int] | None:
    if not ids and not all_:
        raise click.UsageError("give notification ids, or --all")
    return None if all_ else list(ids)


@dlq.command("replay")
@click.argument("channel", type=CHANNEL)
@click.argument("ids", type=int, nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter of the channel (and --type).")
@click.option("--type", "kind", help="Only this notification type.")
@click.option("--note", help="Why; kept in the escalation history.")
def dlq_replay(
    channel: str, ids: tuple[int, ...], all_: bool, kind: str | None, note: str | None
) -> None:
    """Send dead letters back to tier 0, history kept."""
    from herald.notifications.models import Channel

    chosen = _selection(ids, all_)
    done = _with_herald(
        lambda h: h.dead_letters.replay(Channel(channel), chosen, kind=kind, note=note)
    )
    click.echo(f"replayed {len(done)}: {' '.join(map(str, done))}".rstrip(": "))


@dlq.command("discard")
@click.argument("channel", type=CHANNEL)
@click.argument("ids", type=int, nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter of the channel (and --type).")
@click.option("--type", "kind", help="Only this notification type.")
@click.option("--reason", required=True, help="Why they are dropped; kept on each notification.")
def dlq_discard(
    channel: str, ids: tuple[int, ...], all_: bool, kind: str | None, reason: str
) -> None:
    """Drop dead letters for good, with a reason."""
    from herald.notifications.models import Channel

    chosen = _selection(ids, all_)
    done = _with_herald(
        lambda h: h.dead_letters.discard(Channel(channel), chosen, reason=reason, kind=kind)
    )
    click.echo(f"discarded {len(done)}: {' '.join(map(str, done))}".rstrip(": "))


# --- Scale-out --------------------------------------------------------------------------------
# --- API keys -------------------------------------------------------------------------------
def _with_database(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work` with a sessionmaker on this installation's database (migrated first)."""
    from herald.core.db import create_engine, create_sessionmaker, run_migrations

    settings = _settings()
    run_migrations(settings.effective_database_url)

    async def run() -> T:
        engine = create_engine(settings.effective_database_url, settings.db_busy_timeout)
        try:
            return await work(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


@main.group()
def keys() -> None:
    """API keys for applications: create, list, revoke."""


@keys.command("create")
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["trigger", "subscribers", "read", "ops"]),
    help="A scope the key holds; repeat for more.",
)
def keys_create(name: str, scopes: tuple[str, ...]) -> None:
    """Make a key and print it: it is shown this once (Herald keeps only its hash)."""
    from herald.apikeys import service
    from herald.apikeys.models import Scope

    row, key = _with_database(lambda db: service.create_key(db, name, [Scope(s) for s in scopes]))
    click.echo(key)
    click.echo(
        f"id {row.id}, prefix {row.prefix}, scopes {','.join(row.scopes)}: "
        "store the key now, it is not shown again",
        err=True,
    )


@keys.command("list")
@click.option("--all", "all_", is_flag=True, help="Revoked keys too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(all_: bool, as_json: bool) -> None:
    """The keys: id, name, prefix, scopes (never the key)."""
    from herald.apikeys import service
    from herald.apikeys.schemas import ApiKeyOut

    async def work(db: Any) -> list[ApiKeyOut]:
        async with db() as session:
            rows = await service.listed(session, include_revoked=all_)
            return [ApiKeyOut.model_validate(r) for r in rows]

    found = _with_database(work)
    if as_json:
        click.echo(json.dumps([k.model_dump(mode="json", by_alias=True) for k in found], indent=2))
        return
    for k in found:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "live"
        scopes = ",".join(k.scopes)
        click.echo(f"{k.id:>5}  hk_{k.prefix}_…  {scopes:<28} {state:<24} {k.name}")


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke a key; every server refuses it within 5 s (its key cache)."""
    from herald.apikeys import service
    from herald.core.db import transaction
    from herald.core.errors import NotFound

    async def work(db: Any) -> None:
        async with transaction(db) as session:
            await service.revoke(session, key_id)

    try:
        _with_database(work)
    except NotFound as exc:
        click.echo(f"herald: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"revoked key {key_id}")


@main.group()
def cluster() -> None:
    """Several API servers and workers behind HAProxy on this machine."""


@cluster.command("up")
def cluster_up() -> None:
    """Start Redis (embedded unless configured), the API servers on SERVER1_PORT..., the
    workers and HAProxy on LOAD_BALANCER_PORT, all detached; wait until each is healthy."""
    from herald.cluster.supervisor import Layout, up
    from herald.cluster.topology import ClusterError

    settings = _settings()
    configure_logging("warning")
    layout = Layout.of(settings)
    click.echo(f"starting a Herald cluster from {settings.data_dir}")
    try:
        started = up(settings, say=lambda line: click.echo(f"  {line}"))
    except ClusterError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(1)
    pids = ", ".join(f"{p.name} {p.pid}" for p in started)
    click.echo(
        f"cluster running: http://{settings.host}:{settings.load_balancer_port}\n"
        f"  pids: {pids}\n  logs: {layout.logs}/\n"
        "  check it: herald status    stop it: herald cluster down"
    )


@cluster.command("down")
def cluster_down() -> None:
    """Stop exactly what `herald cluster up` started, letting jobs and sockets finish."""
    from herald.cluster.supervisor import down

    settings = _settings()
    if not down(settings, say=click.echo):
        click.echo(f"no cluster is running from {settings.data_dir}")


def _servers_option(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--server [NAME=]HOST:PORT`, repeatable, as `lb-config` and `status` take it."""
    return click.option("--server", "servers", multiple=True, metavar="[NAME=]HOST:PORT", help=text)


def _backends(servers: tuple[str, ...]) -> list[Backend]:
    """The `--server` values as backends; a bad one is a one-line error (exit 2)."""
    from herald.cluster.topology import ClusterError, parse_backend

    try:
        return [parse_backend(s, i) for i, s in enumerate(servers, 1)]
    except ClusterError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(2)


@main.command("lb-config")
@_servers_option("An API server; repeat for each. Default: SERVER1_PORT... on this machine.")
@click.option("--bind", help="Where HAProxy listens (default *:LOAD_BALANCER_PORT).")
def lb_config(servers: tuple[str, ...], bind: str | None) -> None:
    """Print the HAProxy configuration for a production load balancer."""
    from herald.cluster import haproxy
    from herald.cluster.topology import ClusterError, local_backends

    settings = _settings()
    backends = _backends(servers)
    try:
        config = haproxy.lb_config(
            settings,
            backends or local_backends(settings),
            bind=bind or f"*:{settings.load_balancer_port}",
            stats_socket=Path("/run/haproxy/admin.sock"),
            production=True,
        )
    except ClusterError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(2)
    click.echo(haproxy.render(config), nl=False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_servers_option("An API server to check; repeat. Default: the local cluster, or SERVER1_PORT...")
@click.option("--lb", help="The load balancer's URL (default: the local one).")
def status(as_json: bool, servers: tuple[str, ...], lb: str | None) -> None:
    """Every server, the load balancer, Redis, the database, every queue and both DLQs.
    Exits 1 when something is down."""
    from herald.cluster import status as status_

    settings = _settings()
    configure_logging("warning")
    backends = _backends(servers)
    report = asyncio.run(status_.gather(settings, status_.target(settings, backends, lb)))
    click.echo(json.dumps(report, indent=2) if as_json else status_.render(report))
    sys.exit(0 if report["ok"] else 1)


# --- Trying a live Herald ---------------------------------------------------------------------
@main.command("try")
@click.argument(
    "script",
    type=click.Choice(["login-notification", "friend-request-notification", "notification-toast"]),
)
@click.option(
    "--url",
    default="http://localhost:8000",
    show_default=True,
    help="The Herald (or load balancer) to try.",
)
@click.option(
    "--timeout", type=float, default=15.0, show_default=True, help="Seconds each step may take."
)
def try_(script: str, url: str, timeout: float) -> None:
    """Run a scripted walkthrough against a live Herald, printing each step: a login alert
    arriving in real time, a friend request and its acceptance, a notification toast."""
    from herald.tryouts import run

    sys.exit(0 if asyncio.run(run(script, url, click.echo, timeout)) else 1)


# --- Benchmarks -------------------------------------------------------------------------------
BENCH_SCENARIOS = ("ingest", "inapp", "knee", "email", "sockets", "ceiling", "quiet")
CHAOS_SCENARIOS = (
    "worker-killed",
    "db-connections-terminated",
    "redis-restarted-empty",
    "api-killed",
)


@main.command()
@click.argument("scenarios", nargs=-1, type=click.Choice(BENCH_SCENARIOS))
@click.option("--quick", is_flag=True, help="Small sizes: every figure in under two minutes.")
@click.option(
    "--clients", type=int, default=2000, show_default=True, help="In-app: connected socket clients."
)
@click.option(
    "--rate", type=float, default=300, show_default=True, help="In-app: notifications per second."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Where bench.json and bench.md are written.",
)
@click.option(
    "--docs",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also put the table into this page (docs/benchmarks.md), between its markers.",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Sample every Herald process with py-spy (pip install py-spy); folded stacks "
    "go to OUT/profiles/.",
)
@click.option(
    "--peer",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Then run the same scenarios on the peer in this folder (../shared/peers/seedstack: "
    "Node.js 20 and DATABASE_URL needed) and report Herald ÷ peer.",
)
def bench(
    scenarios: tuple[str, ...],
    quick: bool,
    clients: int,
    rate: float,
    out: Path,
    docs: Path | None,
    profile: bool,
    peer: Path | None,
) -> None:
    """Measure throughput, latency and memory of a whole local Herald against its targets.

    Runs SCENARIOS (default: all) one after another, each on a fresh Herald: `herald api` and
    `herald worker` processes, SQLite and an embedded Redis in a temporary folder, and an SMTP
    sink that accepts everything. With DATABASE_URL (PostgreSQL) each scenario gets a scratch
    database on that server, dropped afterwards; with REDIS_URL the bench EMPTIES that Redis
    database before each scenario, so give it one of its own. Run it on a quiet machine.
    """
    from herald.bench import report
    from herald.bench.run import run
    from herald.bench.scenarios import Sizes

    settings = _settings()
    configure_logging("warning")
    names = list(scenarios or BENCH_SCENARIOS)
    command = " ".join(["herald bench", *sys.argv[2:]])
    result = asyncio.run(
        run(
            names,
            quick=quick,
            sizes=Sizes.of(quick, clients, rate),
            database_url=settings.database_url,
            redis_url=settings.configured_redis_url,
            command=command,
            say=click.echo,
            profile_dir=out / "profiles" if profile else None,
            peer=peer,
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    table = report.markdown(result)
    (out / "bench.md").write_text(table)
    if docs:
        report.update_docs(docs, table)
    click.echo(
        f"\n{table}\nwritten: {out}/bench.json, {out}/bench.md" + (f", {docs}" if docs else "")
    )
    failed = [
        n
        for n, f in {
            **result["scenarios"],
            **{f"peer {k}": v for k, v in result["peer"].items()},
        }.items()
        if "error" in f
    ]
    if failed or result["missing"]:
        click.echo(f"herald bench: failed {failed}, missing {result['missing']}", err=True)
        sys.exit(1)


# --- Fault runs -------------------------------------------------------------------------------
@main.command()
@click.argument("scenarios", nargs=-1, type=click.Choice(CHAOS_SCENARIOS))
@click.option(
    "--quick", is_flag=True, help="Short runs at 10 triggers/s: all of it in about a minute."
)
@click.option(
    "--url",
    help="A running Herald on this machine (an API server or its load balancer) "
    "instead of a fresh one.",
)
@click.option("--token", envvar="HERALD_ADMIN_TOKEN", help="Its admin token (with --url).")
@click.option(
    "--database-url", help="With --url: its PostgreSQL, whose connections are terminated."
)
@click.option("--redis-url", help="With --url: its Redis.")
@click.option(
    "--allow-redis-restart",
    is_flag=True,
    help="An external Redis may have its clients cut and its database EMPTIED.",
)
@click.option(
    "--sink-port",
    type=int,
    help="With --url: run an SMTP sink on this port, to count "
    "arrivals (point the deployment's EMAIL_HOST/EMAIL_PORT at it).",
)
@click.option(
    "--timeout",
    type=float,
    help="Stop everything after this many seconds [default: 120 with --quick, else 900].",
)
def chaos(
    scenarios: tuple[str, ...],
    quick: bool,
    url: str | None,
    token: str | None,
    database_url: str | None,
    redis_url: str | None,
    allow_redis_restart: bool,
    sink_port: int | None,
    timeout: float | None,
) -> None:
    """Put Herald through the faults an operator meets and count what each lost, duplicated and
    answered with an error: a worker SIGKILLed mid-drain, its PostgreSQL connections terminated
    every 0.25 s, Redis gone and back empty, an API server SIGKILLed; all under steady email
    triggers.

    Without --url it starts a fresh Herald as `herald bench` does (two `herald api`, a `herald
    worker`, SQLite or a scratch database on DATABASE_URL's PostgreSQL, the embedded Redis or
    REDIS_URL's, whose database it EMPTIES), sends its email to an SMTP sink of its own, and
    stops all of it at the end. With --url it works on a running Herald on this machine: it
    kills none of its processes, so only the database and Redis faults run. Exits 1 when a
    scenario lost a notification or could not finish.
    """
    from herald.chaos import run as chaos_run
    from herald.chaos.faults import Sizes
    from herald.chaos.target import ChaosError, local, running

    settings = _settings()
    configure_logging("warning")
    names = list(scenarios or CHAOS_SCENARIOS)
    bound = timeout or (120.0 if quick else 900.0)

    async def go() -> list[chaos_run.Outcome]:
        if url:
            if not token:
                raise ChaosError("--url needs --token (or HERALD_ADMIN_TOKEN)")
            target = running(
                url,
                token,
                database_url=database_url,
                redis_url=redis_url,
                allow_redis_restart=allow_redis_restart,
                sink_port=sink_port,
            )
        else:
            click.echo(f"a fresh Herald in {work}")
            target = local(
                work,
                database_url=settings.database_url,
                redis_url=settings.configured_redis_url,
                allow_redis_restart=allow_redis_restart,
            )
        async with target as t:
            return await chaos_run.run_all(t, names, Sizes.of(quick), click.echo)

    work = Path(tempfile.mkdtemp(prefix="herald-chaos-"))
    try:
        outcomes = asyncio.run(asyncio.wait_for(go(), bound))
    except ChaosError as exc:
        shutil.rmtree(work, ignore_errors=True)
        click.echo(f"herald chaos: {exc}", err=True)
        sys.exit(2)
    except TimeoutError:
        click.echo(
            f"herald chaos: not finished within {bound:g} s; stopped (logs: {work})", err=True
        )
        sys.exit(1)
    click.echo("\n" + chaos_run.table(outcomes))
    failed = any(o.failed for o in outcomes)
    if failed:
        click.echo(f"the Herald processes' logs are kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)
