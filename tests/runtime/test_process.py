"""The process ranker serves in: its open-files limit, its heap."""

from __future__ import annotations

import gc
import resource
import weakref

import pytest

from ranker.runtime.process import raise_open_files_limit, settle_heap


def test_the_open_files_limit_is_raised_to_the_hard_limit(
    open_files_limit: tuple[int, int],
) -> None:
    _, hard = open_files_limit
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard limit ({hard}) leaves no room to lower the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    raised = raise_open_files_limit()
    assert raised > 512
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (raised, hard)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settling_the_heap_collects_start_up_garbage_and_freezes_the_rest() -> None:
    # A full collection then visits only what was made after start-up, not every module,
    # class and function (tens of milliseconds with the event loop stopped, once a second).
    kept = [object() for _ in range(10)]
    cycle = Node()
    cycle.other = Node()
    cycle.other.other = cycle
    garbage = weakref.ref(cycle)
    del cycle
    try:
        settle_heap()
        assert garbage() is None  # start-up's garbage is collected, not frozen for ever
        assert not any(obj is kept for obj in gc.get_objects())  # what lives on is frozen
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    assert any(obj is kept for obj in gc.get_objects())
