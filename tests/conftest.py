"""Fixtures that start real things: Herald on a real port, a real SMTP server, real databases.

They live in tests/fixtures/ (registered below, so every test folder sees them), with the
helpers tests import. What stays here is the hook that bounds every test's body.

Every Herald test runs on two stacks:
- `embedded`: SQLite and an embedded redis-server child process, exactly what `herald serve`
  uses with nothing configured;
- `services`: PostgreSQL and an external Redis, when HERALD_TEST_DATABASE_URL and
  HERALD_TEST_REDIS_URL are set (`.ci/run` sets them when those services answer).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

import pytest

# The shared helpers' asserts are rewritten as a test's are (registered before they load).
pytest.register_assert_rewrite("tests.fixtures")

from tests.fixtures.waiting import dump_tasks  # noqa: E402

pytest_plugins = [
    "tests.fixtures.stacks",
    "tests.fixtures.smtp",
    "tests.fixtures.herald",
    "tests.fixtures.browser",
]


# --- A hung test fails alone -------------------------------------------------------------------
# Every test shares one event loop (the session's). pytest-timeout's signal (300 s, the backstop)
# interrupts whatever runs at that moment, the loop itself included, and leaves it unusable:
# every later test then errors in its set-up. So a test's body is cancelled inside the loop
# first, which fails that test with its stack and lets its fixtures stop Herald as usual.
# The signal times the test function alone (`timeout_func_only`): fixtures bound their own waits
# (a Herald's start-up and shutdown), and a signal inside pytest's fixture teardown can leave the
# fixture half finalized: every later test using it then errors in set-up, and the Herald it held
# keeps running, its workers' commands counted by later tests.
TEST_BODY_TIMEOUT = 200.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    body = getattr(item, "obj", None)
    if not inspect.iscoroutinefunction(body):
        return (yield)

    @functools.wraps(body)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        # The stacks are taken just before the deadline: once cancelled, the test's own
        # stack no longer shows what it was waiting for.
        stacks: list[str] = []
        loop = asyncio.get_running_loop()
        snapshot = loop.call_later(TEST_BODY_TIMEOUT - 1, lambda: stacks.append(dump_tasks()))
        deadline = asyncio.timeout(TEST_BODY_TIMEOUT)
        try:
            async with deadline:
                return await body(*args, **kwargs)
        except TimeoutError:
            if not deadline.expired():  # the test's own wait timed out: its error as it is
                raise
            raise AssertionError(
                f"the test ran past {TEST_BODY_TIMEOUT:.0f} s:\n" + "".join(stacks)
            ) from None
        finally:
            snapshot.cancel()

    item.obj = bounded  # type: ignore[attr-defined]
    try:
        return (yield)
    finally:
        item.obj = body  # type: ignore[attr-defined]
