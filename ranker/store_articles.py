"""Article metadata: what the CMS and events say of an article, its scores in every ranking, and
the indexes of published articles that fill short lists."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from .config import SITE_WIDE
from .scoring import decayed
from .store_base import StoreBase, observed
from .store_editorial import HIDDEN_UNTIL, LEGACY_HIDDEN, hidden_at


@dataclass(frozen=True, slots=True)
class Article:
    """An article's metadata and its current decayed score in every ranking that holds it, in
    the default profile (``scores``) and in each window (``windows``: window -> ranking ->
    score; a window holding it in no ranking is left out)."""

    article_id: str
    title: str | None
    url: str | None
    section: str | None
    published_at: float | None
    hidden: bool
    scores: dict[str, float]
    hidden_until: float | None = None
    """When a hide with an end stops; None when the article is not hidden, or hidden until
    unhidden."""
    windows: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def blank(cls, article_id: str) -> Article:
        """An article ranker holds nothing for."""
        return cls(article_id, None, None, None, None, hidden=False, scores={}, windows={})


class ArticleMetadata(StoreBase):
    """Reading and changing article metadata."""

    @observed("article_get")
    async def get_article(self, article_id: str, now: float) -> Article | None:
        """An article's metadata and scores, or None when ranker knows nothing of it."""
        rankings = self._settings.rankings
        profiles = self._settings.profiles
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.article(article_id))
            for window in profiles:
                for ranking in rankings:
                    keys = [self.keys.scores(ranking, window), self.keys.decay(ranking, window)]
                    await self._score(keys=keys, args=[article_id], client=pipe)
            meta, *states = await pipe.execute()
        by_profile: dict[str | None, dict[str, float]] = {}
        for index, window in enumerate(profiles):
            profile_states = states[index * len(rankings) : (index + 1) * len(rankings)]
            found = {
                ranking: decayed(float(stored), float(landmark), float(half_life), now)
                for ranking, (landmark, half_life, stored) in zip(
                    rankings, profile_states, strict=True
                )
                if stored is not None and landmark is not None
            }
            if found or window is None:
                by_profile[window] = found
        scores = by_profile.pop(None)
        windows = {str(window): found for window, found in by_profile.items()}
        if not meta and not scores and not windows:
            return None
        published_at = meta.get("published_at")
        hidden = hidden_at(meta.get(LEGACY_HIDDEN), meta.get(HIDDEN_UNTIL), now)
        until = float(meta[HIDDEN_UNTIL]) if hidden and HIDDEN_UNTIL in meta else math.inf
        return Article(
            article_id=article_id,
            title=meta.get("title"),
            url=meta.get("url"),
            section=meta.get("section"),
            published_at=float(published_at) if published_at is not None else None,
            hidden=hidden,
            scores=scores,
            hidden_until=until if math.isfinite(until) else None,
            windows=windows,
        )

    @observed("article_put")
    async def put_article(self, article_id: str, changes: Mapping[str, Any]) -> None:
        """Set the given metadata fields (not ``hidden``: see
        :class:`~ranker.store_editorial.EditorialStore`); a field given as None is cleared. An
        article with a ``published_at`` is kept in the site-wide fill index, and in its
        section's when it has a ``section`` too (moved when either changes, removed when either
        is cleared)."""
        key = self.keys.article(article_id)
        # The fields as they were: an article that changes section leaves the old one's index.
        old_section: str | None = None
        section: str | None = None
        published: Any = None
        if changes.keys() & {"section", "published_at"}:
            stored, old_published = await self._redis.hmget(key, ["section", "published_at"])
            old_section = None if stored is None else str(stored)  # str already: decode_responses
            section = changes.get("section", old_section)
            published = changes.get("published_at", old_published)
        to_set: dict[FieldT, EncodableT] = {}
        to_clear: list[str] = []
        for name, value in changes.items():
            if value is None:
                to_clear.append(name)
            else:
                to_set[name] = repr(value) if isinstance(value, float) else str(value)
        async with self._redis.pipeline(transaction=False) as pipe:
            if to_set:
                pipe.hset(key, mapping=to_set)
            if to_clear:
                pipe.hdel(key, *to_clear)
            # The CMS's word is kept: metadata events made (which expires) is the CMS's now.
            pipe.persist(key)
            if changes.keys() & {"section", "published_at"}:
                self._index_published(pipe, article_id, old_section, section, published)
            await pipe.execute()

    def _index_published(
        self,
        pipe: Pipeline,
        article_id: str,
        old_section: str | None,
        section: str | None,
        published: Any,
    ) -> None:
        """Queue the fill-index changes for an article's new ``section`` and ``published_at``."""
        if old_section is not None and (old_section != section or published is None):
            pipe.zrem(self.keys.published(old_section), article_id)
        if published is None:
            pipe.zrem(self.keys.published(SITE_WIDE), article_id)
            return
        # Bounded like a ranking: the oldest go first, and only the newest can ever be fill.
        keep = self._settings.max_set_size
        for ranking in (SITE_WIDE,) if section is None else (SITE_WIDE, section):
            index = self.keys.published(ranking)
            pipe.zadd(index, {article_id: float(published)})
            pipe.zremrangebyrank(index, 0, -keep - 1)
