"""All of Herald's settings in one place, read from the environment and `.env`.

The original deployment variables keep their plain names (`DATABASE_URL`, `REDIS_HOST`,
`RETRY_1_DELAY`, ...) for compatibility with existing deployments; every other setting takes a
`HERALD_` prefix. Delays are in milliseconds.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _h(name: str) -> str:
    return f"HERALD_{name}"


@dataclass(frozen=True)
class TierSettings:
    """One tier of a retry ladder as configured."""

    attempts: int  # 0 for the dead-letter queue, which nothing drains by itself
    delay_ms: int  # wait before the first attempt in this tier (0 for the first and the last)
    concurrency: int


@dataclass(frozen=True)
class LadderSettings:
    """One channel's retry ladder as configured: what `herald.notifications.ladder` reads.

    `tiers` runs in order: the main queue, the retry tiers, the dead-letter queue last; a tier's
    queue follows from its place and `queue` (the main queue's name, not a setting): `mail`,
    `mail-retry-1`, `mail-retry-2`, `mail-dlq`. So every channel is the same shape, and the
    ladder module builds any of them with one loop. Frozen, hence hashable: the tiers are built
    once per distinct ladder (`herald.notifications.ladder._tiers`).
    """

    queue: str
    tiers: tuple[TierSettings, ...]

    @classmethod
    def of(
        cls,
        queue: str,
        *,
        attempts: tuple[int, ...],
        delays: tuple[int, ...],
        concurrency: tuple[int, ...],
    ) -> LadderSettings:
        """The ladder from its settings as the README lists them: the attempts of each tier
        that has any, the delay before each retry tier, and the concurrency of every tier."""
        return cls(
            queue,
            tuple(
                TierSettings(n, delay, c)
                for n, delay, c in zip((*attempts, 0), (0, *delays, 0), concurrency, strict=True)
            ),
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, populate_by_name=True
    )

    # --- Herald's own -------------------------------------------------------------------
    data_dir: Path = Field(Path("herald-data"), validation_alias=_h("DATA_DIR"))
    admin_token: SecretStr | None = Field(None, validation_alias=_h("ADMIN_TOKEN"))
    # The HS256 secret an application's backend signs its users' client tokens (JWTs) with;
    # unset, client tokens are refused. At least 32 characters: HS256 is as strong as its key.
    client_token_secret: SecretStr | None = Field(
        None, min_length=32, validation_alias=_h("CLIENT_TOKEN_SECRET")
    )
    # Where people reach this Herald (the load balancer's HTTPS address in production): the
    # base of the one-click unsubscribe links in emails. Unset: http://HERALD_HOST:PORT.
    public_url: str | None = Field(None, validation_alias=_h("PUBLIC_URL"))
    # The HMAC secret unsubscribe links are signed with (32+ characters, the same on every
    # server). Unset: derived from the admin token, so rotating that one voids old links.
    unsubscribe_secret: SecretStr | None = Field(
        None, min_length=32, validation_alias=_h("UNSUBSCRIBE_SECRET")
    )
    # An address whose mailbox the operator processes: emails then also carry
    # `List-Unsubscribe: <mailto:ADDRESS?subject=unsubscribe%20TOKEN>`.
    unsubscribe_mailto: str | None = Field(None, validation_alias=_h("UNSUBSCRIBE_MAILTO"))
    server_id: str | None = Field(None, validation_alias=_h("SERVER_ID"))
    host: str = Field("127.0.0.1", validation_alias=_h("HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias="PORT")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=_h("LOG_LEVEL")
    )
    # Where `herald serve` runs its capture mailbox (an SMTP server that stores, never sends)
    # when no EMAIL_HOST is configured. 0 picks a free port.
    mailbox_port: int = Field(2525, ge=0, le=65535, validation_alias=_h("MAILBOX_PORT"))
    redis_server: str | None = Field(None, validation_alias=_h("REDIS_SERVER"))
    email_security: Literal["auto", "none", "starttls", "tls"] = Field(
        "auto", validation_alias=_h("EMAIL_SECURITY")
    )
    email_timeout: float = Field(10.0, gt=0, validation_alias=_h("EMAIL_TIMEOUT"))
    session_ttl_hours: float = Field(24 * 7, gt=0, validation_alias=_h("SESSION_TTL_HOURS"))
    inapp_ttl_hours: float = Field(24, gt=0, validation_alias=_h("INAPP_TTL_HOURS"))
    # An in-app attempt counts as delivered only when a client acknowledges the notification
    # (`notification:ack`) within this many seconds; otherwise it failed ("not acknowledged").
    inapp_ack_timeout: float = Field(10.0, gt=0, validation_alias=_h("INAPP_ACK_TIMEOUT"))
    # Base of the exponential backoff between attempts inside one tier.
    backoff_delay: int = Field(1000, ge=0, validation_alias=_h("BACKOFF_DELAY"))
    # How long a request waits for Redis before leaving a notification `pending` for the
    # reconciler; the API answers either way.
    enqueue_timeout: float = Field(2.0, gt=0, validation_alias=_h("ENQUEUE_TIMEOUT"))
    # Seconds a SQLite writer waits for the write lock before the request answers 503.
    db_busy_timeout: float = Field(30.0, gt=0, validation_alias=_h("DB_BUSY_TIMEOUT"))
    # BullMQ's job lock: a worker that dies mid-job loses its lock after `job_lock_ms`, and a
    # stalled-job check (every `stalled_interval_ms`) puts the job back to run again.
    job_lock_ms: int = Field(30_000, ge=500, validation_alias=_h("JOB_LOCK_MS"))
    stalled_interval_ms: int = Field(30_000, ge=200, validation_alias=_h("STALLED_INTERVAL_MS"))
    # On shutdown, how long in-flight jobs may take to finish before they are cut short.
    worker_shutdown_timeout: float = Field(
        10.0, gt=0, validation_alias=_h("WORKER_SHUTDOWN_TIMEOUT")
    )
    max_stalled_count: int = Field(3, ge=1, validation_alias=_h("MAX_STALLED_COUNT"))
    # The reconciler re-enqueues notifications whose job never reached Redis (left `pending`)
    # or vanished from it (a Redis restarted without persistence). Seconds.
    reconcile_interval: float = Field(10.0, gt=0, validation_alias=_h("RECONCILE_INTERVAL"))
    reconcile_grace: float = Field(5.0, ge=0, validation_alias=_h("RECONCILE_GRACE"))
    # Digests (herald.digests): how long a process keeps the digest rules it read before
    # reading them again (seconds; a change reaches other servers within it), and how many
    # digests one worker closes at once.
    digest_rules_cache: float = Field(5.0, ge=0, validation_alias=_h("DIGEST_RULES_CACHE"))
    digest_concurrency: int = Field(2, ge=1, validation_alias=_h("DIGEST_CONCURRENCY"))
    # How often each API server renews its presence heartbeat (seconds); its sockets stop
    # counting three beats after it dies.
    presence_heartbeat: float = Field(5.0, gt=0, validation_alias=_h("PRESENCE_HEARTBEAT"))
    # `herald cluster up`: how many API servers (on SERVER1_PORT, SERVER2_PORT, ...) and worker
    # processes to run behind HAProxy, and how fast HAProxy notices a dead server
    # (it is taken out after `lb_check_fall` failed checks `lb_check_interval_ms` apart).
    cluster_servers: int = Field(3, ge=1, le=64, validation_alias=_h("CLUSTER_SERVERS"))
    cluster_workers: int = Field(1, ge=1, le=64, validation_alias=_h("CLUSTER_WORKERS"))
    cluster_start_timeout: float = Field(60.0, gt=0, validation_alias=_h("CLUSTER_START_TIMEOUT"))
    haproxy_binary: str = Field("haproxy", validation_alias=_h("HAPROXY"))
    lb_check_interval_ms: int = Field(2000, ge=100, validation_alias=_h("LB_CHECK_INTERVAL"))
    lb_check_fall: int = Field(3, ge=1, validation_alias=_h("LB_CHECK_FALL"))
    lb_check_rise: int = Field(2, ge=1, validation_alias=_h("LB_CHECK_RISE"))
    # The retry ladders' settings below (email's here and among the plain names, webhooks'
    # here, in-app's among the plain names) are read through `ladders` only.
    mail_max_attempts: int = Field(3, ge=1, validation_alias=_h("MAIL_MAX_ATTEMPTS"))
    mail_retry_1_max_attempts: int = Field(
        3, ge=1, validation_alias=_h("MAIL_RETRY_1_MAX_ATTEMPTS")
    )
    mail_retry_2_max_attempts: int = Field(
        2, ge=1, validation_alias=_h("MAIL_RETRY_2_MAX_ATTEMPTS")
    )
    # Webhooks (herald.webhooks): the third channel's ladder, as the email one's (delays in ms),
    # how long one POST to a receiver may take, and how long each process trusts its cached
    # list of registered endpoints (a change made through another process reaches this one
    # within that many seconds; the process that made it knows at once).
    webhook_max_attempts: int = Field(3, ge=1, validation_alias=_h("WEBHOOK_MAX_ATTEMPTS"))
    webhook_queue_concurrency: int = Field(
        10, ge=1, validation_alias=_h("WEBHOOK_QUEUE_CONCURRENCY")
    )
    webhook_retry_1_delay: int = Field(60_000, ge=0, validation_alias=_h("WEBHOOK_RETRY_1_DELAY"))
    webhook_retry_1_max_attempts: int = Field(
        3, ge=1, validation_alias=_h("WEBHOOK_RETRY_1_MAX_ATTEMPTS")
    )
    webhook_retry_1_concurrency: int = Field(
        5, ge=1, validation_alias=_h("WEBHOOK_RETRY_1_CONCURRENCY")
    )
    webhook_retry_2_delay: int = Field(600_000, ge=0, validation_alias=_h("WEBHOOK_RETRY_2_DELAY"))
    webhook_retry_2_max_attempts: int = Field(
        3, ge=1, validation_alias=_h("WEBHOOK_RETRY_2_MAX_ATTEMPTS")
    )
    webhook_retry_2_concurrency: int = Field(
        3, ge=1, validation_alias=_h("WEBHOOK_RETRY_2_CONCURRENCY")
    )
    webhook_dlq_concurrency: int = Field(1, ge=1, validation_alias=_h("WEBHOOK_DLQ_CONCURRENCY"))
    webhook_timeout: float = Field(10.0, gt=0, validation_alias=_h("WEBHOOK_TIMEOUT"))
    webhook_cache_seconds: float = Field(2.0, ge=0, validation_alias=_h("WEBHOOK_CACHE_SECONDS"))
    # Telemetry: how long a request's stage timeline stays readable in Redis (seconds; 0 keeps
    # none, metrics still count), and the share of telemetry ids whose timelines are kept.
    telemetry_ttl: int = Field(900, ge=0, validation_alias=_h("TELEMETRY_TTL"))
    telemetry_sample_rate: float = Field(
        1.0, ge=0, le=1, validation_alias=_h("TELEMETRY_SAMPLE_RATE")
    )
    # Connection analytics: a user who signs in on a socket again within this many seconds of
    # one of theirs disconnecting counts as a reconnection.
    reconnect_window: float = Field(60.0, gt=0, validation_alias=_h("RECONNECT_WINDOW"))
    # --- The API's limits -----------------------------------------------------------------
    # Largest request body accepted; bigger ones get 413 before any endpoint reads them.
    max_body_bytes: int = Field(1024 * 1024, ge=1024, validation_alias=_h("MAX_BODY_BYTES"))
    # Requests per client address per window on the endpoints people brute-force; 0 = no limit.
    rate_limit_window: int = Field(60, ge=1, validation_alias=_h("RATE_LIMIT_WINDOW"))
    rate_limit_signup: int = Field(10, ge=0, validation_alias=_h("RATE_LIMIT_SIGNUP"))
    rate_limit_login: int = Field(20, ge=0, validation_alias=_h("RATE_LIMIT_LOGIN"))
    rate_limit_reset: int = Field(5, ge=0, validation_alias=_h("RATE_LIMIT_RESET"))
    # Failed sign-ins per account (whatever the address) within `login_lockout_window`
    # seconds; past it, that account's sign-ins get 429 until the window ends. 0 = no limit.
    login_failures_per_account: int = Field(
        10, ge=0, validation_alias=_h("LOGIN_FAILURES_PER_ACCOUNT")
    )
    login_lockout_window: int = Field(900, ge=1, validation_alias=_h("LOGIN_LOCKOUT_WINDOW"))
    # Addresses (or networks) of the load balancers whose X-Forwarded-For / -Proto headers are
    # believed; uvicorn's variable name. Empty: nobody's (`herald cluster up` sets 127.0.0.1
    # for the HAProxy it runs).
    forwarded_allow_ips: str = Field("", validation_alias="FORWARDED_ALLOW_IPS")
    idempotency_ttl_hours: float = Field(24, gt=0, validation_alias=_h("IDEMPOTENCY_TTL_HOURS"))
    reset_token_ttl_minutes: float = Field(60, gt=0, validation_alias=_h("RESET_TOKEN_TTL_MINUTES"))
    friend_request_ttl_days: float = Field(30, gt=0, validation_alias=_h("FRIEND_REQUEST_TTL_DAYS"))
    # The locale whose stored templates a recipient gets when none matches their own locale
    # (or they have none), before the built-ins (herald.templates).
    default_locale: str = Field(
        "en",
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$",
        validation_alias=_h("DEFAULT_LOCALE"),
    )

    # --- Plain names, kept for existing deployments ------------------------------------
    database_url: str | None = None
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_username: str | None = None
    redis_password: SecretStr | None = None

    email_host: str | None = None
    email_port: int = Field(587, ge=1, le=65535)
    email_user: str | None = None
    email_password: SecretStr | None = None
    email_from: str = "Herald <no-reply@herald.local>"

    load_balancer_port: int = Field(8000, ge=1, le=65535)
    server1_port: int = Field(5001, ge=1, le=65535)
    server2_port: int = Field(5002, ge=1, le=65535)
    server3_port: int = Field(5003, ge=1, le=65535)
    cors_origin: str = "http://localhost:3000,http://localhost:3003"
    frontend_url: str = "http://localhost:3000,http://localhost:3003"

    mail_queue_concurrency: int = Field(5, ge=1)
    retry_1_delay: int = Field(300_000, ge=0)
    retry_1_concurrency: int = Field(3, ge=1)
    retry_2_delay: int = Field(1_800_000, ge=0)
    retry_2_concurrency: int = Field(2, ge=1)
    dlq_concurrency: int = Field(1, ge=1)

    inapp_queue_concurrency: int = Field(10, ge=1)
    inapp_max_attempts: int = Field(3, ge=1)
    inapp_retry_1_delay: int = Field(120_000, ge=0)
    inapp_retry_1_concurrency: int = Field(5, ge=1)
    inapp_retry_1_max_attempts: int = Field(3, ge=1)
    inapp_retry_2_delay: int = Field(600_000, ge=0)
    inapp_retry_2_concurrency: int = Field(3, ge=1)
    inapp_retry_2_max_attempts: int = Field(2, ge=1)
    inapp_dlq_concurrency: int = Field(1, ge=1)

    ws_heartbeat_interval: int = Field(30_000, ge=1000)
    # WebSocket per-message deflate. Off: every browser offers it, and the zlib state it keeps
    # per connection doubles a socket's memory (~90 KB instead of ~47 KB measured by
    # `herald bench sockets`), while notification frames are far below the 1 KB that
    # socket.io-client itself sets as the threshold worth compressing.
    ws_compression: bool = Field(False, validation_alias=_h("WS_COMPRESSION"))
    ws_max_reconnect_attempts: int = Field(5, ge=0)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        """Accept the URLs people paste (`postgresql://`, `sqlite:///`) and use async drivers."""
        if not url:
            return None
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        if not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return url

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/") if url else None

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        if address and ("@" not in address or any(c in address for c in "<>?, \t")):
            raise ValueError("must be a plain email address (unsubscribe@example.com)")
        return address or None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return url or None

    # --- Derived --------------------------------------------------------------------------
    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'herald.db').resolve()}"

    @property
    def configured_redis_url(self) -> str | None:
        """The external Redis, if one is configured; None means Herald embeds its own."""
        if self.redis_url:
            return self.redis_url
        if not self.redis_host:
            return None
        auth = ""
        if self.redis_password:
            user = quote(self.redis_username or "", safe="")
            auth = f"{user}:{quote(self.redis_password.get_secret_value(), safe='')}@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def uses_capture_mailbox(self) -> bool:
        return not self.email_host

    @cached_property
    def effective_server_id(self) -> str:
        return self.server_id or f"{socket.gethostname()}:{self.port}"

    @property
    def frontend_link_base(self) -> str:
        """Where links in emails point: the first of FRONTEND_URL's origins."""
        return self.frontend_url.split(",")[0].strip().rstrip("/")

    @property
    def trusted_proxies(self) -> list[str]:
        return [a.strip() for a in self.forwarded_allow_ips.split(",") if a.strip()]

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origin.split(",") if o.strip()]

    @cached_property
    def ladders(self) -> Mapping[str, LadderSettings]:
        """Each channel's retry ladder, keyed by the channel's name (`settings.ladders[channel]`).

        The flat fields stay the input: they hold the environment names people's `.env` files
        use (uneven: the plain `RETRY_1_DELAY` is the email ladder's, webhooks' take `HERALD_`),
        the keyword names of `Settings(...)`, and the names an invalid value is reported by.
        This is the one place that reads them; code reads the ladders. Made once per Settings:
        a trigger or job asks for its ladder a few times, and settings do not change.
        """
        return MappingProxyType(
            {
                "email": LadderSettings.of(
                    "mail",
                    attempts=(
                        self.mail_max_attempts,
                        self.mail_retry_1_max_attempts,
                        self.mail_retry_2_max_attempts,
                    ),
                    delays=(self.retry_1_delay, self.retry_2_delay),
                    concurrency=(
                        self.mail_queue_concurrency,
                        self.retry_1_concurrency,
                        self.retry_2_concurrency,
                        self.dlq_concurrency,
                    ),
                ),
                "inapp": LadderSettings.of(
                    "inapp",
                    attempts=(
                        self.inapp_max_attempts,
                        self.inapp_retry_1_max_attempts,
                        self.inapp_retry_2_max_attempts,
                    ),
                    delays=(self.inapp_retry_1_delay, self.inapp_retry_2_delay),
                    concurrency=(
                        self.inapp_queue_concurrency,
                        self.inapp_retry_1_concurrency,
                        self.inapp_retry_2_concurrency,
                        self.inapp_dlq_concurrency,
                    ),
                ),
                "webhook": LadderSettings.of(
                    "webhook",
                    attempts=(
                        self.webhook_max_attempts,
                        self.webhook_retry_1_max_attempts,
                        self.webhook_retry_2_max_attempts,
                    ),
                    delays=(self.webhook_retry_1_delay, self.webhook_retry_2_delay),
                    concurrency=(
                        self.webhook_queue_concurrency,
                        self.webhook_retry_1_concurrency,
                        self.webhook_retry_2_concurrency,
                        self.webhook_dlq_concurrency,
                    ),
                ),
            }
        )


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming it."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None


# A setting whose name holds one of these is never echoed in an error: a wrong secret is still
# a secret (HERALD_UNSUBSCRIBE_SECRET, EMAIL_PASSWORD, HERALD_ADMIN_TOKEN, ...).
_SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")


def _one_line(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        value = err.get("input")
        hidden = isinstance(value, dict) or any(w in name for w in _SECRET_WORDS)
        shown = "" if hidden else f"={value!r}"
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{name}{shown}: {message}")
    return "invalid setting " + "; ".join(problems)
