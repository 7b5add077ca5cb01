"""Turning a `Calls` builder into a client method, once for each transport.

`HeraldClient.trigger` is `sync_method(Calls.trigger)`: the same parameters, its documentation,
and the result run through the shared retry loop on httpx.Client; `AsyncHeraldClient.trigger`
is the same on httpx.AsyncClient. So the parameters of each call are written once, in `Calls`."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import httpx

from herald.client.core import Call, Calls, Outcome, RetryPolicy, Send, exchange

if TYPE_CHECKING:
    from herald.client.aio import AsyncHeraldClient
    from herald.client.sync import HeraldClient

P = ParamSpec("P")
T = TypeVar("T")


def run_sync(http: httpx.Client, policy: RetryPolicy, call: Call[T]) -> T:
    steps = exchange(call, policy)
    step = next(steps)
    while True:
        outcome: Outcome = None
        if isinstance(step, Send):
            try:
                outcome = http.send(step.request)
            except httpx.TransportError as exc:
                outcome = exc
        else:
            time.sleep(step.seconds)
        try:
            step = steps.send(outcome)
        except StopIteration as done:
            return done.value


async def run_async(http: httpx.AsyncClient, policy: RetryPolicy, call: Call[T]) -> T:
    steps = exchange(call, policy)
    step = next(steps)
    while True:
        outcome: Outcome = None
        if isinstance(step, Send):
            try:
                outcome = await http.send(step.request)
            except httpx.TransportError as exc:
                outcome = exc
        else:
            await asyncio.sleep(step.seconds)
        try:
            step = steps.send(outcome)
        except StopIteration as done:
            return done.value


def sync_method(
    build: Callable[Concatenate[Calls, P], Call[T]],
) -> Callable[Concatenate[HeraldClient, P], T]:
    @functools.wraps(build)
    def method(self: HeraldClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(self.http, self.retry, build(self.calls, *args, **kwargs))

    return method


def async_method(
    build: Callable[Concatenate[Calls, P], Call[T]],
) -> Callable[Concatenate[AsyncHeraldClient, P], Awaitable[T]]:
    @functools.wraps(build)
    async def method(self: AsyncHeraldClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_async(self.http, self.retry, build(self.calls, *args, **kwargs))

    return method


def client_options(
    base_url: str, token: str | None, timeout: float, retry: RetryPolicy | None
) -> tuple[Calls, RetryPolicy, dict[str, Any]]:
    """What both clients make from their arguments."""
    return Calls(base_url, token, timeout), retry or RetryPolicy(), {"timeout": timeout}
