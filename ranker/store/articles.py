"""Article metadata: what the CMS and events say of an article, its scores in every ranking, and
the indexes of published articles that fill short lists."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError
from redis.typing import EncodableT, FieldT

from ranker.config import SITE_WIDE
from ranker.decay import decayed

from .base import Pipe, PoolExhausted, StoreBase, observed
from .cluster import ScriptedClusterPipeline
from .editorial import HIDDEN_UNTIL, LEGACY_HIDDEN, hidden_at


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


def _taken(read: asyncio.Future[Any]) -> None:
    if not read.cancelled():
        read.exception()


class ArticleMetadata(StoreBase):
    """Reading and changing article metadata."""

    async def get_article(self, article_id: str, now: float) -> Article | None:
        """An article's metadata and scores as of ``now``, or None when ranker knows nothing
        of it.

        Reads of one article that come while another waits to be sent share that one: each
        came before it was sent, so it sees every write made before any of them came. At most
        :func:`~ranker.store.base.article_connections` reads run at once, on connections of
        their own; one that finds no room within ``redis_timeout_s`` raises
        :class:`~ranker.store.base.PoolExhausted`."""
        read = self._unsent_article_reads.get(article_id)
        if read is None:
            read = asyncio.ensure_future(self._read_article(article_id))
            # Its outcome is taken here too: when every caller has left (a client gone, a
            # request timed out), a failure must not be logged as one nobody retrieved.
            read.add_done_callback(_taken)
            self._unsent_article_reads[article_id] = read
        # Shielded: a caller that leaves must not cancel the read the others wait for.
        meta, states = await asyncio.shield(read)
        return self._article(article_id, meta, states, now)

    @observed("article_get")
    async def _read_article(self, article_id: str) -> tuple[dict[str, str], list[Any]]:
        """One HGETALL and one script call per ranking (all its profiles), in one round trip."""
        try:
            async with asyncio.timeout(self._settings.redis_timeout_s):
                await self._article_slots.acquire()
        except TimeoutError:
            raise PoolExhausted(
                f"no room for another article read within {self._settings.redis_timeout_s} s"
            ) from None
        finally:
            # From here on it may be sent: a read that comes later must not share it, or it
            # could miss a write made before it came.
            del self._unsent_article_reads[article_id]
        try:
            return await self._send_article_read(article_id)
        finally:
            self._article_slots.release()

    async def _send_article_read(self, article_id: str) -> tuple[dict[str, str], list[Any]]:
        profiles = self._settings.profiles
        sha = self._score.sha
        for attempt in (1, 2):
            # EVALSHA directly: a script passed to a pipeline makes redis-py ask SCRIPT EXISTS
            # first, a round trip more for every read.
            async with self._article_redis.pipeline(transaction=False) as pipe:
                if isinstance(pipe, ScriptedClusterPipeline):
                    # Reads only: a master without the script refuses its call, handled below.
                    pipe.check_scripts = False
                pipe.hgetall(self.keys.article(article_id))
                for ranking in self._settings.rankings:
                    home = self.shards.home(ranking, article_id)
                    keys: list[str] = []
                    for window in profiles:
                        keys += [self.keys.scores(home, window), self.keys.decay(home, window)]
                    pipe.evalsha(sha, len(keys), *keys, article_id)
                try:
                    meta, *states = await pipe.execute()
                except NoScriptError:
                    if attempt == 2:
                        raise
                    # Redis restarted or its scripts were flushed: load it, and read again.
                    await self._article_redis.script_load(self._score.script)
                    continue
            return meta, states
        raise AssertionError("unreachable")

    def _article(
        self, article_id: str, meta: dict[str, str], states: list[Any], now: float
    ) -> Article | None:
        rankings = self._settings.rankings
        by_profile: dict[str | None, dict[str, float]] = {}
        for index, window in enumerate(self._settings.profiles):
            found = {}
            for ranking, state in zip(rankings, states, strict=True):
                landmark, half_life, stored = state[3 * index : 3 * index + 3]
                if stored is not None and landmark is not None:
                    found[ranking] = decayed(float(stored), float(landmark), float(half_life), now)
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
        :class:`~ranker.store.editorial.EditorialStore`); a field given as None is cleared. An
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
        pipe: Pipe,
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
