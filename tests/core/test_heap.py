"""The server processes' collector settings (herald/core/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from herald.core import heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """The test process keeps CPython's defaults whatever `settle` did."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class Cycle:
    """An object in a reference cycle, which says when the collector frees it."""

    def __init__(self, freed: list[str]) -> None:
        self.freed = freed
        self.me = self

    def __del__(self) -> None:
        self.freed.append("cycle")


def test_settle_freezes_the_start_up_heap_and_collects_less_often(
    restored_collector: None,
) -> None:
    built_at_start_up = {"tables": [object() for _ in range(100)]}
    freed: list[str] = []
    Cycle(freed)  # garbage start-up left behind

    heap.settle()

    assert freed == ["cycle"]  # freed first, not frozen for the process's life
    assert gc.get_freeze_count() > 0
    # What start-up built is in the permanent generation, outside every collection.
    assert not any(o is built_at_start_up for o in gc.get_objects())
    assert gc.get_threshold() == (heap.YOUNG, heap.OLDER, heap.OLDER)
    assert heap.YOUNG > 700  # CPython's default, which the bench measured as too eager


def test_a_cycle_left_after_start_up_is_still_collected(restored_collector: None) -> None:
    heap.settle()
    freed: list[str] = []
    Cycle(freed)
    gc.collect()
    assert freed == ["cycle"]
