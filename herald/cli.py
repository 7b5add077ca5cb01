"""The `herald` command."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import click

from herald.core.config import Settings, SettingsError, load_settings
from herald.core.logging import configure_logging


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


def _run_http(settings: Settings, *, workers: bool) -> None:
    import uvicorn

    from herald.web.app import create_app

    app = create_app(settings, api=True, workers=workers)
    click.echo(_banner(settings, workers=workers))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


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
def worker() -> None:
    """Queue workers only."""
    settings = _settings()
    asyncio.run(_run_workers(settings))


async def _run_workers(settings: Settings) -> None:
    from herald.runtime import Herald

    herald = Herald(settings, api=False, workers=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await herald.start()
    click.echo(f"Herald workers running ({settings.effective_server_id})")
    try:
        await stop.wait()
    finally:
        await herald.stop()


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    from herald.core.db import run_migrations

    settings = _settings()
    run_migrations(settings.effective_database_url)
    click.echo("database is at the newest revision")
