"""Fixtures shared by this folder's tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from ranker.config import Settings
from ranker.store import RankingStore


@pytest.fixture
def make_store(redis: Redis, make_settings: Callable[..., Settings]) -> Callable[..., RankingStore]:
    def make(**overrides: Any) -> RankingStore:
        return RankingStore(redis, make_settings(**overrides))

    return make
