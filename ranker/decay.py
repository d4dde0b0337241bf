"""Forward-decay arithmetic, shared by the flush planner and the read path.

A view of weight ``w`` at time ``t`` is worth ``w * 2**(-(T - t) / h)`` at time ``T``. Each ranking
stores ``w * 2**((t - L) / h)`` for a landmark ``L``, so stored scores never need rewriting as time
passes and their order is the order of the decayed scores. The Lua script ``increment.lua`` moves
``L`` forward by whole half-lives (an exact power-of-two rescale) before stored values can
overflow a double.
"""

from __future__ import annotations

from collections.abc import Callable
from math import exp2

Clock = Callable[[], float]
"""The time source scores and event defaults are taken from: epoch seconds."""

REBASE_AFTER_HALF_LIVES = 256
"""Rebase once an increment lands this many half-lives past the landmark: 2**256 times any
realistic view total is still far below the largest double (about 2**1024)."""

HALF_LIFE_SETTLE_S = 300.0
"""A ranking's half-life changes at most this often, so replicas that disagree during a rolling
deploy do not rescale its set back and forth on every flush."""

MAX_FUTURE_S = 300.0
"""Events stamped further than this past the server's clock are rejected."""


def decayed(stored: float, landmark: float, half_life: float, at: float) -> float:
    """The score at time ``at`` of a value stored relative to ``landmark``."""
    return stored * exp2(-(at - landmark) / half_life)
