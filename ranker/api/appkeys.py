"""Typed keys for everything an app holds. Declared here, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from ranker.config import Settings
from ranker.ingest.admission import Admission
from ranker.ingest.flusher import Ingestor
from ranker.lists.cache import RankingCache
from ranker.metrics import Metrics
from ranker.store import RankingStore
from ranker.store.base import Client
from ranker.store.notices import ChangeNotices

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
REDIS: web.AppKey[Client] = web.AppKey("redis")
STORE = web.AppKey("store", RankingStore)
INGESTOR = web.AppKey("ingestor", Ingestor)
CACHE = web.AppKey("cache", RankingCache)
NOTICES = web.AppKey("notices", ChangeNotices)
ADMISSION = web.AppKey("admission", Admission)
METRICS_DIR = web.AppKey("metrics_dir", Path)
"""Set only for one of several workers: where they share their metrics."""
