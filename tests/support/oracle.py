"""An independent model of what the rankings must hold: exact decayed sums, in plain Python.

It knows nothing of landmarks, rebasing or Lua; it keeps every view and sums them with fsum.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest

SITE_WIDE = "all"
REL = 1e-9


class Oracle:
    def __init__(self, half_life_for: Callable[[str], float]) -> None:
        self._half_life_for = half_life_for
        # ranking -> article -> [(ts, weight)]
        self.views: defaultdict[str, defaultdict[str, list[tuple[float, float]]]] = defaultdict(
            lambda: defaultdict(list)
        )

    def add(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            view = (float(event["ts"]), float(event.get("weight", 1.0)))
            for ranking in (event["section"], SITE_WIDE):
                self.views[ranking][event["article_id"]].append(view)

    def score(self, ranking: str, article_id: str, at: float) -> float:
        half_life = self._half_life_for(ranking)
        views = self.views[ranking].get(article_id, [])
        return math.fsum(w * 2.0 ** ((t - at) / half_life) for t, w in views)

    def prune(self, at: float, below: float, counted: Iterable[Mapping[str, Any]]) -> None:
        """Drop what ranker may drop after a flush: an article whose whole score is under
        ``below`` views, unless the flush (``counted``) had a view of it in that ranking."""
        kept = {(r, e["article_id"]) for e in counted for r in (e["section"], SITE_WIDE)}
        for ranking, articles in self.views.items():
            for article_id in [
                a
                for a in articles
                if (ranking, a) not in kept and self.score(ranking, a, at) < below
            ]:
                del articles[article_id]

    def ranked(self, ranking: str, at: float) -> list[tuple[str, float]]:
        scored = [(a, self.score(ranking, a, at)) for a in self.views[ranking]]
        return sorted(scored, key=lambda item: -item[1])


def assert_list_matches(oracle: Oracle, ranking: str, limit: int, body: Mapping[str, Any]) -> None:
    """The served list is the oracle's top ``limit``, each score within ``REL``.

    Articles whose exact scores are within ``REL`` of each other may trade places, as may the
    ones tied at the cut-off; nothing else may differ.
    """
    at = body["generated_at"]
    items = body["items"]
    expected = oracle.ranked(ranking, at)
    assert body["section"] == ranking
    assert len(items) == min(limit, len(expected)), (ranking, limit)
    assert [item["rank"] for item in items] == list(range(1, len(items) + 1))
    for item in items:
        exact = oracle.score(ranking, item["article_id"], at)
        assert math.isfinite(item["score"])
        assert item["score"] == pytest.approx(exact, rel=REL, abs=0), (ranking, item)
    scores: Sequence[float] = [item["score"] for item in items]
    assert all(a >= b for a, b in itertools.pairwise(scores)), ranking
    if len(items) == limit and len(expected) > limit:
        cutoff = expected[limit - 1][1]
        served = {item["article_id"] for item in items}
        must_serve = {a for a, s in expected if s > cutoff * (1 + 2 * REL)}
        assert must_serve <= served, (ranking, must_serve - served)
    else:
        assert {item["article_id"] for item in items} == {a for a, _ in expected}
