"""The running Herald: every engine and client one process needs, started and stopped together.

A process plays one or both roles: `api` (HTTP + Socket.IO) and `workers` (the delivery queues).
`herald serve` runs both; `herald api` and `herald worker` run one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from pathlib import Path

import socketio

from herald.accounts.resets import PasswordResets
from herald.accounts.service import Accounts
from herald.apikeys.service import KeyCache
from herald.channels.email import EmailSender
from herald.channels.inapp import InAppSender
from herald.channels.mailbox import CaptureMailbox
from herald.channels.webhook import WebhookSender
from herald.commerce.models import purchases_of
from herald.commerce.service import Purchases
from herald.core.config import Settings
from herald.core.db import create_engine, create_sessionmaker, run_migrations_async
from herald.core.group_commit import GroupCommit
from herald.core.ratelimit import RateLimiter
from herald.core.redis import EmbeddedRedis, running_embedded_url
from herald.core.redis import client as redis_client
from herald.delivery.accepted import AcceptedOutcomes
from herald.delivery.dead_letters import DeadLetters
from herald.delivery.dispatch import Dispatcher
from herald.delivery.processor import Processor
from herald.delivery.queues import Queues
from herald.delivery.reconciler import Reconciler
from herald.delivery.senders import ChannelSender
from herald.delivery.workers import DeliveryWorkers
from herald.digests.service import Digests
from herald.digests.worker import DigestWorker
from herald.inbox.acks import AckListener
from herald.inbox.service import Inbox
from herald.monitoring.service import Monitoring
from herald.notifications import unsubscribe
from herald.notifications.ladder import escalation_routes
from herald.notifications.models import Channel
from herald.preferences.service import TypeRegistry
from herald.preferences.skips import Outbox
from herald.realtime.adapter import server as socket_server
from herald.realtime.presence import Presence
from herald.realtime.server import Notifications, create_socket_server, redis_manager
from herald.realtime.sessions import Disconnector
from herald.social.models import friend_requests_of
from herald.social.service import FriendRequests
from herald.subscribers.service import Removal
from herald.telemetry.service import Telemetry
from herald.templates.store import TemplateStore
from herald.trigger.service import Trigger
from herald.webhooks.events import WebhookEvents
from herald.webhooks.registry import EndpointCache

log = logging.getLogger(__name__)


def private_folder(path: Path) -> None:
    """The data folder holds password hashes, email addresses and the admin token: only its
    owner may enter it, whatever the files inside were created with."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        path.chmod(0o700)


class Herald:
    def __init__(self, settings: Settings, *, api: bool = True, workers: bool = True) -> None:
        self.settings = settings
        self.run_api = api
        self.run_workers = workers
        private_folder(settings.data_dir)
        # No Redis configured: attach to the embedded one of this data folder if another Herald
        # process runs it, else start our own.
        self.embedded_redis: EmbeddedRedis | None = None
        redis_url = settings.configured_redis_url or running_embedded_url(settings.data_dir)
        if redis_url is None:
            self.embedded_redis = EmbeddedRedis(settings.data_dir, settings.redis_server)
            redis_url = self.embedded_redis.url
        self.redis_url = redis_url
        self.engine = create_engine(settings.effective_database_url, settings.db_busy_timeout)
        self.db = create_sessionmaker(self.engine)
        self.group_commit = GroupCommit(self.db)
        self.redis = redis_client(self.redis_url, decode_responses=True)
        self.rate_limiter = RateLimiter(self.redis, settings.rate_limit_window)
        self.queues = Queues(settings, self.redis_url)
        self.telemetry = Telemetry(settings, self.redis_url, escalation_routes(settings))
        self.dispatcher = Dispatcher(settings, self.db, self.queues, self.telemetry)
        self.webhook_endpoints = EndpointCache(self.db, settings.webhook_cache_seconds)
        self.webhooks = WebhookEvents(settings, self.db, self.webhook_endpoints)
        self.dispatcher.events = self.webhooks
        self.webhooks.dispatcher = self.dispatcher
        self.dead_letters = DeadLetters(settings, self.db, self.queues, self.dispatcher)
        # A user's in-app notifications for their sockets (sockets' acks recorded together).
        self.inbox = Inbox(
            self.db, self.queues, self.webhooks, self.telemetry, self.redis, self.redis_url
        )
        # Email templates, all stored ones kept in memory: rendering queries nothing.
        self.templates = TemplateStore(settings, self.db, self.redis)
        self.reconciler = Reconciler(settings, self.db, self.queues, self.dispatcher)
        self.presence = Presence(
            self.redis,
            settings.effective_server_id,
            ttl_seconds=3 * settings.presence_heartbeat,
            reconnect_window=settings.reconnect_window,
            announce={
                "host": settings.host,
                "port": settings.port,
                "hostname": socket.gethostname(),
            },
        )
        self.admin_token = self._admin_token()
        self.api_keys = KeyCache(self.db, self.admin_token)
        # Preferences: critical types (cached) and the signer of one-click unsubscribe links.
        self.types = TypeRegistry(self.db)
        self.unsubscribe = unsubscribe.Signer(unsubscribe.secret(settings, self.admin_token))
        self.digests = Digests(
            settings, self.db, self.queues, self.dispatcher, self.templates, self.unsubscribe
        )
        self.mailbox = CaptureMailbox(settings.data_dir) if settings.uses_capture_mailbox else None
        # An API server's Socket.IO server and its handlers.
        self.sio: socketio.AsyncServer | None = None
        self.sockets: Notifications | None = None
        if api:
            self.sockets = Notifications(
                settings, self.db, self.redis, self.presence, self.inbox, self.telemetry.metrics
            )
            self.sio = create_socket_server(settings, self.redis_url, self.sockets)
        self.disconnector = Disconnector(self.redis, self.sio, self.presence)
        self.accounts = Accounts(
            settings,
            self.db,
            self.templates,
            self.dispatcher,
            self.rate_limiter,
            self.disconnector,
        )
        self.resets = PasswordResets(
            settings, self.db, self.templates, self.dispatcher, self.disconnector
        )
        self.outbox = Outbox(self.dispatcher, self.group_commit, self.telemetry, self.webhooks)
        self.purchases = Purchases(
            settings, self.db, self.types, self.templates, self.unsubscribe, self.outbox
        )
        self.subscriber_removal = Removal(self.db, [purchases_of, friend_requests_of])
        self.friend_requests = FriendRequests(
            settings, self.db, self.types, self.queues, self.outbox
        )
        self.trigger = Trigger(
            settings,
            self.db,
            self.templates,
            self.types,
            self.digests,
            self.unsubscribe,
            self.group_commit,
            self.outbox,
            self.dispatcher,
        )
        self.monitoring = Monitoring(
            settings,
            self.telemetry,
            self.queues,
            self.presence,
            self.sio,
            admin_token=self.admin_token,
            redis_url=self.redis_url,
            api=api,
            workers=workers,
        )
        self.workers: DeliveryWorkers | None = None
        self.digest_worker: DigestWorker | None = None
        self._mailbox_server: asyncio.Server | None = None
        self._emitter: socketio.AsyncRedisManager | None = None
        self._email: EmailSender | None = None
        self._webhook: WebhookSender | None = None
        self._acks: AckListener | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def _admin_token(self) -> str:
        """HERALD_ADMIN_TOKEN, or one made once and kept (mode 600) in the data folder."""
        if self.settings.admin_token:
            return self.settings.admin_token.get_secret_value()
        path = self.settings.data_dir / "admin-token"
        if not path.exists():
            # Several processes of one data folder may start at once (`herald cluster up`):
            # write a private file, then link it into place, so exactly one token wins and
            # nobody reads a half-written file.
            draft = path.with_name(f".admin-token.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
            draft.unlink()
        return path.read_text().strip()

    async def start(self) -> None:
        if self.embedded_redis:
            await self.embedded_redis.start()
        await run_migrations_async(self.settings.effective_database_url)
        if self.run_api or self.run_workers:  # both emit webhook events
            await self._load_webhook_endpoints()
        if self.run_workers:
            await self._start_workers()
        if self.run_api:  # emails are rendered where they are triggered
            await self.templates.start()
            assert self.sio is not None
            await socket_server.start_listener(self.sio, self.redis)
            self._heartbeat = asyncio.create_task(self._beat(), name="presence-heartbeat")
        if self.run_api or self.run_workers:  # not for a one-off command like `herald dlq`
            self.monitoring.start()
        log.info(
            "herald.started",
            extra={
                "serverId": self.settings.effective_server_id,
                "api": self.run_api,
                "workers": self.run_workers,
                "database": self.engine.dialect.name,
                "embeddedRedis": self.embedded_redis is not None,
                "captureMailbox": self.mailbox is not None,
            },
        )

    async def _load_webhook_endpoints(self) -> None:
        try:
            await self.webhook_endpoints.reload()
        except Exception as exc:  # the first emit loads them then
            log.warning("webhooks.cache.load_failed", extra={"error": repr(exc)})

    async def _start_workers(self) -> None:
        host, port, capture = await self._smtp_target()
        self._emitter = redis_manager(self.redis_url, write_only=True)
        self._acks = AckListener(self.redis_url)
        self._acks.start()
        acks = self._acks
        self._email = EmailSender(self.settings, host, port, capture=capture)
        self._webhook = WebhookSender(self.settings, self.webhook_endpoints)
        senders: dict[Channel, ChannelSender] = {
            Channel.EMAIL: self._email,
            Channel.INAPP: InAppSender(
                self._emitter, self.presence, acks, self.settings.inapp_ack_timeout
            ),
            Channel.WEBHOOK: self._webhook,
        }
        processor = Processor(
            self.db,
            self.queues,
            senders,
            AcceptedOutcomes(self.redis),
            self.telemetry,
            self.webhooks,
        )
        self.workers = DeliveryWorkers(self.settings, self.redis_url, processor)
        self.workers.start()
        self.digest_worker = DigestWorker(self.settings, self.redis_url, self.digests)
        self.digest_worker.start()
        self._reconciler = asyncio.create_task(self.reconciler.run_forever(), name="reconciler")

    async def _smtp_target(self) -> tuple[str, int, bool]:
        if self.mailbox is None:
            assert self.settings.email_host
            return self.settings.email_host, self.settings.email_port, False
        self._mailbox_server, port = await self.mailbox.serve(
            "127.0.0.1", self.settings.mailbox_port
        )
        log.info("mailbox.capture.started", extra={"port": port, "path": str(self.mailbox.path)})
        return "127.0.0.1", port, True

    async def _beat(self) -> None:
        while True:
            try:
                await self.presence.heartbeat()
                swept = await self.presence.sweep()
                if swept:
                    log.info("realtime.presence.swept", extra={"sockets": swept})
            except Exception as exc:  # Redis away: presence resumes when it is back
                log.warning("realtime.presence.error", extra={"error": repr(exc)})
            await asyncio.sleep(self.settings.presence_heartbeat)

    async def stop(self) -> None:
        self.reconciler.stopping = True  # a cancellation swallowed mid-query must not keep it
        for task in (self._reconciler, self._heartbeat):
            if task:
                task.cancel()
        # Wait for them briefly, so nothing of theirs runs on after the engines close.
        loops = [t for t in (self._reconciler, self._heartbeat) if t]
        if loops:
            await asyncio.wait(loops, timeout=5)
        if self._heartbeat:
            with contextlib.suppress(Exception):
                await self.presence.leave()
        await self.templates.close()
        if self.sio:
            await socket_server.stop(self.sio)
        if self.digest_worker:
            await self.digest_worker.close()
        if self.workers:
            await self.workers.close()
        if self._email:
            await self._email.pool.close()
        if self._webhook:
            await self._webhook.close()
        if self._acks:
            await self._acks.close()
        await self.monitoring.close()
        await self.telemetry.close()
        if self._mailbox_server:
            self._mailbox_server.close()
        await self.queues.close()
        await self.redis.aclose()
        await self.engine.dispose()
        if self.embedded_redis:
            await self.embedded_redis.stop()
        log.info("herald.stopped", extra={"serverId": self.settings.effective_server_id})
