"""Typed keys for everything an app holds. Declared here, once."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from redis.asyncio import Redis

from .cache import RankingCache
from .config import Settings
from .ingest import Ingestor
from .metrics import Metrics
from .store import RankingStore

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", RankingStore)
INGESTOR = web.AppKey("ingestor", Ingestor)
CACHE = web.AppKey("cache", RankingCache)
