"""Redis access: the only module that issues commands. Scripts are registered once, here."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from importlib.resources import files
from itertools import chain
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from .config import SITE_WIDE, Settings
from .flush import FlushPlan, script_call
from .keys import Keys
from .metrics import Metrics
from .scoring import HALF_LIFE_SETTLE_S, REBASE_AFTER_HALF_LIVES, decayed


def _lua(name: str) -> str:
    return files("ranker").joinpath("lua", name).read_text(encoding="utf-8")


_INCREMENT = _lua("increment.lua")
_TOP = _lua("top.lua")
_SCORE = _lua("score.lua")
_SEEN = _lua("seen.lua")


FLUSH_IDLE_CHECK_S = 1.0
"""A flush after this long without a successful one first checks its connection."""


class RankedItem(NamedTuple):
    """One list entry. A fill item is a recently published article with no score that fills a
    list short of scored articles; its score is 0.0."""

    article_id: str
    score: float
    title: str | None
    url: str | None
    fill: bool = False


class Ranking(NamedTuple):
    """A ranking's best items, the half-life their scores decay by (None when empty), and how
    many articles its set holds in all."""

    half_life_s: float | None
    items: list[RankedItem]
    members: int = 0


@dataclass(frozen=True, slots=True)
class Article:
    """An article's metadata and its current decayed score in every ranking that holds it."""

    article_id: str
    title: str | None
    url: str | None
    section: str | None
    published_at: float | None
    hidden: bool
    scores: dict[str, float]

    @classmethod
    def blank(cls, article_id: str) -> Article:
        """An article ranker holds nothing for."""
        return cls(article_id, None, None, None, None, hidden=False, scores={})


def _too_old(published: list[str | None], published_after: float) -> bool:
    """Whether an article's ``published_at``, when it was read and is known, is before
    ``published_after``."""
    return bool(published) and published[0] is not None and float(published[0]) < published_after


class FlushNotSent(RedisConnectionError):
    """Redis could not be reached before a flush was sent: nothing of it was applied."""


P = ParamSpec("P")
T = TypeVar("T")


def _observed(
    operation: str,
) -> Callable[
    [Callable[Concatenate[RankingStore, P], Coroutine[Any, Any, T]]],
    Callable[Concatenate[RankingStore, P], Coroutine[Any, Any, T]],
]:
    """Time a store method as one Redis operation, and keep ``ranker_redis_up`` current."""

    def decorate(
        method: Callable[Concatenate[RankingStore, P], Coroutine[Any, Any, T]],
    ) -> Callable[Concatenate[RankingStore, P], Coroutine[Any, Any, T]]:
        async def observed(self: RankingStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
            metrics = self.metrics
            started = time.perf_counter()
            try:
                result = await method(self, *args, **kwargs)
            except (RedisConnectionError, RedisTimeoutError):
                if self.available:
                    self.available = False
                    for listener in self.outage_listeners:
                        listener()
                self.went_down.set()
                metrics.redis_up.set(0)
                raise
            self.available = True
            metrics.redis_up.set(1)
            metrics.redis_command_duration.labels(operation).observe(time.perf_counter() - started)
            return result

        functools.update_wrapper(observed, method)
        return observed

    return decorate


class RankingStore:
    """Decaying rankings and article metadata in Redis."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        flush_redis: Redis | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        self.available = True
        """False from a command that could not reach Redis (refused, cut or timed out) until
        the next that could: work that needs Redis is refused at once meanwhile."""
        self.went_down = asyncio.Event()
        """Set when a command finds Redis unreachable, for the check that finds it back."""
        self.outage_listeners: list[Callable[[], None]] = []
        """Called when a command first finds Redis unreachable after it answered."""
        self._redis = redis
        self._flush_redis = flush_redis if flush_redis is not None else redis
        self._settings = settings
        self.keys = Keys(settings.key_prefix)
        self._increment = self._flush_redis.register_script(_INCREMENT)
        self._top = redis.register_script(_TOP)
        self._score = redis.register_script(_SCORE)
        self._seen = redis.register_script(_SEEN)
        self._flush_proven_at = -math.inf

    @_observed("ping")
    async def ping(self) -> None:
        await self._redis.ping()

    @_observed("server_info")
    async def server_version(self) -> str:
        """The Redis (or Valkey) server's version."""
        info = await self._redis.info("server")
        return str(info.get("valkey_version") or info.get("redis_version") or "unknown")

    @_observed("server_info")
    async def eviction_policy(self) -> str:
        """The server's ``maxmemory-policy``: under any but ``noeviction``, Redis may drop the
        keys that remember counted batches, and a retry would count again."""
        info = await self._redis.info("memory")
        return str(info.get("maxmemory_policy", "unknown"))

    @_observed("flush")
    async def apply(self, plan: FlushPlan, now: float) -> frozenset[str]:
        """Apply a flush: one atomic script call per ranking, all in one pipeline. Returns the
        tokens of the keyed batches some ranking had already counted (retries).

        A ranking whose call finds such a batch applies nothing, and is sent again in another
        pipeline without that batch's share (rare: it takes a retry). A pipeline is never
        sent twice (Redis may have applied it before a connection broke). So after an idle
        spell or a failure, when Redis may have closed the connection (restart, idle timeout),
        it is proven first: a PING that finds it closed drops it, and a second PING opens the
        connection the pipeline then uses. Under load there is no PING.
        """
        settings = self._settings
        if time.monotonic() - self._flush_proven_at > FLUSH_IDLE_CHECK_S:
            try:
                try:
                    await self._flush_redis.ping()
                except RedisConnectionError:
                    await self._flush_redis.ping()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise FlushNotSent(f"the flush was not sent: {exc}") from exc
        self._flush_proven_at = -math.inf
        # Each ranking's script call, as the keyed batches it carries and its merged amounts.
        # A call that finds some of its batches counted already applies nothing and is sent
        # again without them, until none is left over.
        calls = {ranking: script_call(plan, ranking, set()) for ranking in plan.rankings()}
        # A token given twice is counted once: its second batch is a retry of the first.
        uses = Counter(batch.token for batch in plan.keyed)
        replayed = {token for token, used in uses.items() if used > 1}
        counted_before: dict[str, set[str]] = {}  # ranking -> the tokens it had counted
        metadata = plan.metadata
        while calls:
            async with self._flush_redis.pipeline(transaction=False) as pipe:
                for ranking, (tokens, amounts) in calls.items():
                    await self._increment(
                        keys=[
                            self.keys.scores(ranking),
                            self.keys.decay(ranking),
                            self.keys.applied(ranking),
                        ],
                        args=[
                            settings.half_life_for(ranking),
                            plan.reference_ts,
                            now,
                            REBASE_AFTER_HALF_LIVES,
                            settings.prune_below,
                            settings.max_set_size,
                            HALF_LIFE_SETTLE_S,
                            # orjson writes the shortest text that reads back as the same double.
                            orjson.dumps([tokens, list(chain.from_iterable(amounts.items()))]),
                            settings.idempotency_window_s,
                        ],
                        client=pipe,
                    )
                for article_id, (title, url) in metadata.items():
                    key = self.keys.article(article_id)
                    if title is not None:
                        pipe.hsetnx(key, "title", title)
                    if url is not None:
                        pipe.hsetnx(key, "url", url)
                metadata = {}  # set once; the calls sent again carry counts only
                results = await pipe.execute()
            retry: dict[str, tuple[list[str], dict[str, float]]] = {}
            for ranking, (members, found) in zip(calls, results, strict=False):
                if members == -1:
                    skip = counted_before.setdefault(ranking, set())
                    skip.update(str(token) for token in found)
                    replayed |= skip
                    tokens, amounts = script_call(plan, ranking, skip)
                    if tokens or amounts:
                        retry[ranking] = (tokens, amounts)
            calls = retry
        self._flush_proven_at = time.monotonic()
        if plan.keyed:
            # Only now, with every count applied: a kept answer promises a retry that much.
            async with self._flush_redis.pipeline(transaction=False) as pipe:
                for batch in plan.keyed:
                    self._keep(pipe, batch.token, batch.record)
                await pipe.execute()
        return frozenset(replayed)

    @_observed("dedup")
    async def claim_views(self, marks: Mapping[int, list[str]], token: str) -> set[str]:
        """Mark (visitor, article) pairs seen for the dedup window, as ``token``'s batch: one
        script call per shard, all in one pipeline. ``marks`` are the pairs' digests by shard.
        Returns those whose views count: new, or marked by this same token before."""
        window = self._settings.dedup_window_s
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, digests in marks.items():
                keys = [self.keys.seen(shard, digest) for digest in digests]
                await self._seen(keys=keys, args=[token, window], client=pipe)
            results = await pipe.execute()
        return {
            digest
            for digests, counts in zip(marks.values(), results, strict=True)
            for digest, counts_now in zip(digests, counts, strict=True)
            if counts_now
        }

    @_observed("idempotency_set")
    async def keep_answer(self, token: str, record: str) -> bool:
        """Keep the answer to a keyed batch that had nothing to count. False when an answer
        was kept for its key already (that one stays)."""
        async with self._flush_redis.pipeline(transaction=False) as pipe:
            self._keep(pipe, token, record)
            (kept,) = await pipe.execute()
        return bool(kept)

    def _keep(self, pipe: Pipeline, token: str, record: str) -> None:
        pipe.set(
            self.keys.idempotency(token),
            record,
            ex=self._settings.idempotency_window_s,
            nx=True,  # a retry keeps the first answer, not its own
        )

    @_observed("idempotency_get")
    async def idempotency_record(self, token: str) -> str | None:
        """The answer kept for a keyed batch, if it was applied within the window."""
        record = await self._redis.get(self.keys.idempotency(token))
        return None if record is None else str(record)

    @_observed("top")
    async def top(self, ranking: str, limit: int, now: float) -> Ranking:
        """The ``limit`` best visible articles of a ranking, scored as of ``now``: neither
        hidden nor, where the ranking has a maximum age, published before ``now`` less that
        age (an article with no ``published_at`` is never too old). When fewer than ``limit``
        are visible, the list is filled from the ranking's most recently published visible
        articles (see :meth:`_fill`)."""
        keys = [self.keys.scores(ranking), self.keys.decay(ranking), self.keys.hidden(ranking)]
        # Only a ranking with a maximum age reads published_at: the others' reads cost as before.
        max_age_s = self._settings.max_age_s_for(ranking)
        fields = ["title", "url", "hidden"] + ([] if max_age_s is None else ["published_at"])
        published_after = -math.inf if max_age_s is None else now - max_age_s
        # The ranking's hidden set (skipped by the script) can miss an article hidden before
        # the ranking existed; its metadata cannot. Too-old articles are known by their
        # metadata only. Read further past any such article.
        extra = 0
        while True:
            wanted = limit + extra
            landmark, half_life, members, *flat = await self._top(keys=keys, args=[wanted])
            if landmark is None:
                return Ranking(None, await self._fill(ranking, limit, set(), published_after))
            candidates = [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for article_id, _ in candidates:
                    pipe.hmget(self.keys.article(article_id), fields)
                metadata = await pipe.execute()
            visible = [
                (article_id, stored, title, url)
                for (article_id, stored), (title, url, hidden, *published) in zip(
                    candidates, metadata, strict=True
                )
                if hidden != "1" and not _too_old(published, published_after)
            ]
            if len(visible) >= limit or len(candidates) < wanted:
                break
            extra = max(2 * extra, extra + len(candidates) - len(visible))
        landmark_f, half_life_f = float(landmark), float(half_life)
        items = [
            RankedItem(article_id, decayed(stored, landmark_f, half_life_f, now), title, url)
            for article_id, stored, title, url in visible[:limit]
        ]
        if len(items) < limit:
            # Every visible scored article is listed: a full list never gets here.
            listed = {item.article_id for item in items}
            items += await self._fill(ranking, limit - len(items), listed, published_after)
        return Ranking(half_life_f, items, int(members))

    async def _fill(
        self, ranking: str, wanted: int, listed: set[str], published_after: float
    ) -> list[RankedItem]:
        """Up to ``wanted`` of the ranking's most recently published articles, newest first,
        as fill items: not in ``listed``, not hidden, not published before
        ``published_after``, and (for a section) still in that section by their metadata,
        which wins over an index entry a concurrent move left behind."""
        key = self.keys.published(ranking)
        fields = ["title", "url", "hidden", "section", "published_at"]
        items: list[RankedItem] = []
        start, page = 0, wanted + len(listed) + 8
        while True:
            # Newest first, the too-old left out by the index itself.
            found = await self._redis.zrevrangebyscore(
                key, "+inf", published_after, start=start, num=page
            )
            ids = [str(article_id) for article_id in found]  # str already: decode_responses
            async with self._redis.pipeline(transaction=False) as pipe:
                for article_id in ids:
                    pipe.hmget(self.keys.article(article_id), fields)
                metadata = await pipe.execute()
            for article_id, (title, url, hidden, section, published) in zip(
                ids, metadata, strict=True
            ):
                if (
                    article_id in listed
                    or hidden == "1"
                    or published is None
                    or float(published) < published_after
                    or (ranking != SITE_WIDE and section != ranking)
                ):
                    continue
                items.append(RankedItem(article_id, 0.0, title, url, fill=True))
                if len(items) == wanted:
                    return items
            if len(ids) < page:
                return items
            start += page
            page *= 2

    @_observed("movement")
    async def movement_record(
        self, ranking: str, period: int, ids: list[str] | None, ttl_s: int
    ) -> list[str] | None:
        """Record ``ids`` as the list a ranking began movement interval ``period`` with, unless
        a replica did first (that record stays), and return the ids recorded for the interval
        before (None when none was)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if ids is not None:
                pipe.set(self.keys.movement(ranking, period), orjson.dumps(ids), ex=ttl_s, nx=True)
            pipe.get(self.keys.movement(ranking, period - 1))
            *_, previous = await pipe.execute()
        return (
            None if previous is None else [str(article_id) for article_id in orjson.loads(previous)]
        )

    @_observed("article_get")
    async def get_article(self, article_id: str, now: float) -> Article | None:
        """An article's metadata and scores, or None when ranker knows nothing of it."""
        rankings = self._settings.rankings
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.article(article_id))
            for ranking in rankings:
                keys = [self.keys.scores(ranking), self.keys.decay(ranking)]
                await self._score(keys=keys, args=[article_id], client=pipe)
            meta, *states = await pipe.execute()
        scores = {
            ranking: decayed(float(stored), float(landmark), float(half_life), now)
            for ranking, (landmark, half_life, stored) in zip(rankings, states, strict=True)
            if stored is not None and landmark is not None
        }
        if not meta and not scores:
            return None
        published_at = meta.get("published_at")
        return Article(
            article_id=article_id,
            title=meta.get("title"),
            url=meta.get("url"),
            section=meta.get("section"),
            published_at=float(published_at) if published_at is not None else None,
            hidden=meta.get("hidden") == "1",
            scores=scores,
        )

    @_observed("article_put")
    async def put_article(self, article_id: str, changes: Mapping[str, Any]) -> None:
        """Set the given metadata fields; a field given as None is cleared. An article with a
        ``published_at`` is kept in the site-wide fill index, and in its section's when it
        has a ``section`` too (moved when either changes, removed when either is cleared)."""
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
            elif isinstance(value, bool):
                to_set[name] = "1" if value else "0"
            else:
                to_set[name] = repr(value) if isinstance(value, float) else str(value)
        rankings = set(self._settings.rankings)
        if "hidden" in changes and not changes["hidden"]:
            # Also the rankings this process is not configured with (a replica with a newer
            # section list may have hidden it there): none may keep hiding it.
            known = await self._redis.smembers(self.keys.hidden_rankings())
            rankings |= {str(name) for name in known}  # str already: decode_responses
        async with self._redis.pipeline(transaction=False) as pipe:
            if to_set:
                pipe.hset(key, mapping=to_set)
            if to_clear:
                pipe.hdel(key, *to_clear)
            if changes.get("hidden"):
                pipe.sadd(self.keys.hidden_rankings(), *rankings)
                for ranking in rankings:
                    pipe.sadd(self.keys.hidden(ranking), article_id)
            elif "hidden" in changes:
                for ranking in rankings:
                    pipe.srem(self.keys.hidden(ranking), article_id)
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
