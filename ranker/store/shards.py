"""The site-wide ranking spread over sub-rankings (``RANKER_SITE_SHARDS``).

Every view lands in the site-wide ranking, so on a Redis Cluster the node holding its slot
would take a write for every view the whole site counts. With ``K`` shards its scores live in
``K`` sub-rankings, each under a hash tag (and so a slot) of its own, and an article always in
the same one (a hash of its id). Each sub-ranking is a ranking of its own to the increment
script (its own decay state, its own record of counted batches), so a flush applies a
sub-ranking's share as atomically, and a keyed batch exactly once per sub-ranking, as it does a
section's. A list merges the sub-rankings' tops: an article lives in one sub-ranking only, so
the best ``n`` of the site are among the best ``n`` of each, with the very scores one set would
hold (``RANKER_MAX_SET_SIZE`` caps each sub-ranking, so the site's best that many are all kept).
The ranking's pins, hides and fill index are kept once, under its own name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from zlib import crc32

from ranker.config import SITE_WIDE
from ranker.ingest.plan import FlushPlan, Increments, WindowIncrements

from .keys import shard_ranking


def shard_of(article_id: str, shards: int) -> int:
    """The sub-ranking an article's site-wide scores live in: the same in every replica and
    every run (CRC-32 of its id, not Python's salted ``hash``)."""
    return crc32(article_id.encode()) % shards


class Shards:
    """Where a ranking's scores are kept, for ``count`` site-wide shards (1: unsharded, every
    ranking under its own name as before)."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def sharded(self, ranking: str) -> bool:
        """Whether ``ranking``'s scores are spread over sub-rankings."""
        return self.count > 1 and ranking == SITE_WIDE

    def parts(self, ranking: str) -> list[str]:
        """The names ``ranking``'s scores are kept under: its own, or its sub-rankings'."""
        if not self.sharded(ranking):
            return [ranking]
        return [shard_ranking(ranking, shard) for shard in range(self.count)]

    def home(self, ranking: str, article_id: str) -> str:
        """The name ``article_id``'s scores in ``ranking`` are kept under."""
        if not self.sharded(ranking):
            return ranking
        return shard_ranking(ranking, shard_of(article_id, self.count))

    def split(self, plan: FlushPlan) -> FlushPlan:
        """``plan`` with the site-wide ranking's amounts (and each keyed batch's) given to the
        sub-rankings their articles live in: what the increment script is then called for."""
        if self.count == 1:
            return plan
        return replace(
            plan,
            increments=self._split(plan.increments),
            windows=self._split_windows(plan.windows),
            keyed=[
                replace(
                    batch,
                    increments=self._split(batch.increments),
                    windows=self._split_windows(batch.windows),
                )
                for batch in plan.keyed
            ],
        )

    def _split_windows(self, windows: WindowIncrements) -> dict[str, Increments]:
        return {window: self._split(increments) for window, increments in windows.items()}

    def _split(self, increments: Increments) -> Mapping[str, Mapping[str, float]]:
        site = increments.get(SITE_WIDE)
        if site is None:
            return increments
        split: dict[str, dict[str, float]] = {}
        for article_id, amount in site.items():
            split.setdefault(self.home(SITE_WIDE, article_id), {})[article_id] = amount
        others = {
            ranking: amounts for ranking, amounts in increments.items() if ranking != SITE_WIDE
        }
        return {**others, **split}
