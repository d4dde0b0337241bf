"""Helpers for tests of the store: views applied, hides, and the scores of a ranking."""

from __future__ import annotations

from ranker.ingest.plan import FlushPlan
from ranker.store import RankingStore

T0 = 1_800_000_000.0


async def view(store: RankingStore, article_id: str, ts: float, now: float, w: float = 1.0) -> None:
    await store.apply(FlushPlan(ts, {"sports": {article_id: w}, "all": {article_id: w}}), now)
