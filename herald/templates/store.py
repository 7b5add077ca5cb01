"""Which template an email gets, from an in-process copy of every stored template.

Rendering happens on the trigger path, so picking a template costs no database query: each
process keeps all stored templates, compiled, in memory (they are few: types x locales).
A change reaches every process this way: the process that saved it reloads at once and bumps
a version number in Redis (`herald:templates:version`); every other API process reads that
number at most once a second (`CHECK_SECONDS`) in a background task and reloads (one query)
when it moved. So a change is live everywhere within about a second. Should the bump itself
fail (Redis away at that moment), every process also reloads every `RELOAD_SECONDS` anyway.
Compiled templates are kept per (type, locale, updated_at): a reload compiles only what
changed.

The choice, per email (`resolve`): the stored template of its type for the first locale of
the recipient's chain that has one (`de-CH`, then `de`, then HERALD_DEFAULT_LOCALE), else the
type's built-in. A type without a built-in of its own (a trigger's `comment`) that has no
stored template for the chain takes the `generic` family the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core.config import Settings
from herald.templates import locales
from herald.templates.builtin import BUILT_IN, GENERIC, Body
from herald.templates.models import StoredTemplate
from herald.templates.rendering import Compiled, TemplateProblem, compile_body

log = logging.getLogger(__name__)

VERSION_KEY = "herald:templates:version"
CHECK_SECONDS = 1.0
RELOAD_SECONDS = 60.0
CLOSE_SECONDS = 5.0  # how long close() waits for the watcher to end
RESOLVED_MAX = 10_000  # (type, locale) pairs whose choice is remembered


@dataclass(frozen=True)
class Entry:
    type: str
    locale: str
    updated_at: datetime
    compiled: Compiled


@dataclass(frozen=True)
class Choice:
    """The template an email gets: `locale` None means the built-in of `type`."""

    type: str
    locale: str | None
    compiled: Compiled


@cache
def built_in(kind: str) -> Compiled:
    return compile_body(BUILT_IN[kind])


class TemplateStore:
    def __init__(
        self, settings: Settings, db: async_sessionmaker[AsyncSession], redis: Redis
    ) -> None:
        self.default_locale = locales.canonical(settings.default_locale)
        self.db = db
        self.redis = redis
        self._entries: dict[tuple[str, str], Entry] = {}
        self._types: frozenset[str] = frozenset()
        self._resolved: dict[tuple[str, str | None], list[Choice]] = {}
        self._version: str | None = None  # the last version seen in Redis
        self._loaded = False
        self._failed: set[tuple[str, str, datetime]] = set()  # logged once per version
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._closing = False

    # --- choosing and rendering (synchronous: the trigger path calls it per email) ----------
    def resolve(self, kind: str, locale: str | None) -> list[Choice]:
        """The templates to try for an email of `kind`, best first; the last is a built-in.
        Remembered until the next reload (a trigger to many recipients asks the same)."""
        key = (kind, locale)
        found = self._resolved.get(key)
        if found is None:
            if len(self._resolved) >= RESOLVED_MAX:
                self._resolved.clear()
            found = self._resolved[key] = self._resolve(kind, locale)
        return found

    def _resolve(self, kind: str, locale: str | None) -> list[Choice]:
        chain = locales.chain(locale, self.default_locale)
        kinds = [kind] if kind in BUILT_IN or kind in self._types else []
        if kind not in BUILT_IN:
            kinds.append(GENERIC)
        choices: list[Choice] = []
        for k in kinds:
            for loc in chain:
                entry = self._entries.get((k, loc))
                if entry is not None:
                    choices.append(Choice(k, loc, entry.compiled))
                    break
            if k in BUILT_IN:
                choices.append(Choice(k, None, built_in(k)))
                break
        return choices

    def render(
        self, kind: str, locale: str | None, context: Mapping[str, Any]
    ) -> tuple[str, str, str]:
        """(subject, text, html) of an email of `kind` to a recipient with `locale`. A stored
        template that fails on this email's variables is logged (once per version) and the
        next choice, in the end the built-in, is used: a broken template never stops a send."""
        choices = self.resolve(kind, locale)
        for choice in choices[:-1]:
            try:
                return choice.compiled.render(context)
            except TemplateProblem as problem:
                self._log_failure(choice, problem)
        return choices[-1].compiled.render(context)

    def _log_failure(self, choice: Choice, problem: TemplateProblem) -> None:
        assert choice.locale is not None
        entry = self._entries.get((choice.type, choice.locale))
        key = (choice.type, choice.locale, entry.updated_at if entry else datetime.min)
        if key in self._failed:
            return
        self._failed.add(key)
        log.warning(
            "templates.render_failed",
            extra={
                "type": choice.type,
                "locale": choice.locale,
                "field": problem.field,
                "line": problem.line,
                "error": problem.reason,
            },
        )

    # --- keeping the copy current ---------------------------------------------------------
    async def reload(self) -> None:
        """Read every stored template (one query) and compile what changed."""
        async with self._lock:
            async with self.db() as session:
                rows = list(await session.scalars(select(StoredTemplate)))
            entries: dict[tuple[str, str], Entry] = {}
            for row in rows:
                key = (row.type, row.locale)
                known = self._entries.get(key)
                if known is not None and known.updated_at == row.updated_at:
                    entries[key] = known
                    continue
                try:
                    compiled = compile_body(Body(row.subject, row.text, row.html))
                except TemplateProblem as problem:  # saved by an older Jinja2, say
                    log.warning(
                        "templates.compile_failed",
                        extra={"type": row.type, "locale": row.locale, "error": str(problem)},
                    )
                    continue
                entries[key] = Entry(row.type, row.locale, row.updated_at, compiled)
            self._entries = entries
            self._types = frozenset(k for k, _ in entries)
            self._resolved = {}

    async def changed(self) -> None:
        """After a save or delete: this process reloads now, the others within a second."""
        try:
            await self.redis.incr(VERSION_KEY)
        except Exception as exc:  # the others catch up on their periodic reload
            log.warning("templates.version_bump_failed", extra={"error": repr(exc)})
        await self.reload()

    async def check(self) -> None:
        """Reload if another process changed a template since the last check. The version is
        read before the rows, so a change committed meanwhile is never missed."""
        version = cast(str | None, await self.redis.get(VERSION_KEY))  # decode_responses
        if not self._loaded or version != self._version:
            await self.reload()
            self._version, self._loaded = version, True

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        reloaded = loop.time()
        # A flag as well as the cancellation: a database or Redis client can swallow a
        # cancellation that lands mid-query, and the loop would then run on after close().
        while not self._closing:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                if loop.time() - reloaded >= RELOAD_SECONDS:
                    reloaded = loop.time()
                    await self.reload()
                await self.check()
            except Exception as exc:  # Redis or the database away: keep the copy we have
                log.warning("templates.refresh_failed", extra={"error": repr(exc)})

    async def start(self) -> None:
        try:
            await self.check()
        except Exception as exc:  # serve with the built-ins; the watcher keeps trying
            log.warning("templates.load_failed", extra={"error": repr(exc)})
        self._watcher = asyncio.create_task(self.watch(), name="templates-watch")

    async def close(self) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait([self._watcher], timeout=CLOSE_SECONDS)
