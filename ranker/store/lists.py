"""The ranked lists as readers see them: a ranking's best visible articles, filled from the newest
published when short, and the record movement compares each list with."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import orjson

from ranker.config import SITE_WIDE
from ranker.decay import decayed

from .base import StoreBase, observed, script_client
from .editorial import HIDDEN_UNTIL, LEGACY_HIDDEN, hidden_at


class RankedItem(NamedTuple):
    """One list entry. A fill item is a recently published article with no score that fills a
    list short of scored articles; its score is 0.0. A pinned item is in its place because an
    editor put it there; its score is its own (0.0 when it has none)."""

    article_id: str
    score: float
    title: str | None
    url: str | None
    fill: bool = False
    pinned: bool = False
    section: str | None = None
    """The section the article's metadata names (None: none set)."""
    published_at: float | None = None
    """When it was published, epoch seconds (None: not set)."""


class Ranking(NamedTuple):
    """A ranking's best items, the half-life their scores decay by (None when empty), and how
    many articles its set holds in all."""

    half_life_s: float | None
    items: list[RankedItem]
    members: int = 0


def _score(stored: str | float | None, decay: tuple[float, float] | None, now: float) -> float:
    """A stored score decayed to ``now`` by (landmark, half-life); 0.0 for none."""
    if stored is None or decay is None:
        return 0.0
    return decayed(float(stored), decay[0], decay[1], now)


def _too_old(published: str | None, published_after: float) -> bool:
    """Whether an article's ``published_at``, when it is known, is before ``published_after``."""
    return published is not None and float(published) < published_after


def _published_at(published: str | None) -> float | None:
    return None if published is None else float(published)


def _decay(landmark: str | None, half_life: str | None) -> tuple[float, float] | None:
    """A ranking's (landmark, half-life) as its script read them; None when it holds no score."""
    if landmark is None or half_life is None:
        return None
    return float(landmark), float(half_life)


Pin = tuple[int, str, float]
"""A pin in force: its slot, its article, the article's score (0.0: none)."""


class _Candidates(NamedTuple):
    """What a list is made of, read from a ranking's sets: its pins in force, its best
    unpinned members (article id, score) best first, whether those are all its members, its
    half-life (None: it holds no score) and how many articles it holds."""

    pins: list[Pin]
    ranked: list[tuple[str, float]]
    complete: bool
    half_life: float | None
    members: int


def _parse_top(reply: list[Any], now: float) -> _Candidates:
    """The read script's reply (see ranker/store/lua/top.lua), scored as of ``now``; not known
    to be complete."""
    landmark, half_life, members, pin_count, *flat = reply
    decay = _decay(landmark, half_life)
    pin_end = 3 * int(pin_count)
    pins = [
        (int(flat[i]), flat[i + 1], _score(flat[i + 2], decay, now)) for i in range(0, pin_end, 3)
    ]
    ranked = [(flat[i], _score(flat[i + 1], decay, now)) for i in range(pin_end, len(flat), 2)]
    return _Candidates(pins, ranked, False, None if decay is None else decay[1], int(members))


_FIELDS = ["title", "url", LEGACY_HIDDEN, HIDDEN_UNTIL, "section", "published_at"]
"""What a list reads of each article it may list: what an item shows, and whether it may."""


Metadata = dict[tuple[str, ...], dict[str, list[str | None]]]
"""Article metadata already read, by the fields read and the article id: shared by the reads of
one refresh, so an article listed in several lists (windows of a ranking, its section's and the
site-wide one) is read once for all of them."""


class ListReads(StoreBase):
    """Reading the ranked lists."""

    @observed("top")
    async def top(
        self,
        ranking: str,
        limit: int,
        now: float,
        window: str | None = None,
        metadata: Metadata | None = None,
    ) -> Ranking:
        """The ``limit`` best visible articles of a ranking in a window (None: the default
        profile), scored as of ``now``, with the articles editors pinned in their slots.
        Article metadata found in ``metadata`` is not read again; what is read is added to it.

        Visible means neither hidden nor, where the ranking has a maximum age, published
        before ``now`` less that age (an article with no ``published_at`` is never too old).
        When fewer than ``limit`` are visible, the list is filled from the ranking's most
        recently published visible articles (see :meth:`_fill`). Pins then take their slots
        (a pin past the list's end goes last), pushing the others down: a pinned article is
        listed once, at its slot, whatever its score, even with none; only a hide takes it
        out. Hides and pins are the ranking's, the same in every window.
        """
        max_age_s = self._settings.max_age_s_for(ranking)
        fields = _FIELDS
        published_after = -math.inf if max_age_s is None else now - max_age_s
        # The ranking's hides (skipped by the script) can miss an article hidden before the
        # ranking existed; its metadata cannot. Too-old articles are known by their metadata
        # only. Read further past any such article.
        extra = 0
        while True:
            wanted = limit + extra
            found = await self._candidates(ranking, window, wanted, now)
            read = await self._metadata(
                [*(pin[1] for pin in found.pins), *(c[0] for c in found.ranked)], fields, metadata
            )
            pinned_metadata, listed_metadata = read[: len(found.pins)], read[len(found.pins) :]
            visible = [
                (article_id, score, title, url, section, published)
                for (article_id, score), (title, url, hidden, until, section, published) in zip(
                    found.ranked, listed_metadata, strict=True
                )
                if not hidden_at(hidden, until, now) and not _too_old(published, published_after)
            ]
            if found.complete or len(visible) >= limit:
                break
            extra = max(2 * extra, extra + wanted - len(visible))
        items = [
            RankedItem(
                article_id,
                score,
                title,
                url,
                section=section,
                published_at=_published_at(published),
            )
            for article_id, score, title, url, section, published in visible[:limit]
        ]
        pinned = [
            (
                slot,
                RankedItem(
                    article_id,
                    score,
                    title,
                    url,
                    pinned=True,
                    section=section,
                    published_at=_published_at(published),
                ),
            )
            for (slot, article_id, score), (title, url, hidden, until, section, published) in zip(
                found.pins, pinned_metadata, strict=True
            )
            if not hidden_at(hidden, until, now)
        ]
        if len(items) < limit:
            # Every visible scored article is listed: a full list never gets here.
            listed = {item.article_id for item in items} | {item.article_id for _, item in pinned}
            items += await self._fill(ranking, limit - len(items), listed, published_after, now)
        for slot, item in sorted(pinned, key=lambda pin: pin[0]):
            items.insert(slot - 1, item)
        return Ranking(found.half_life, items[:limit], found.members)

    def _top_keys(self, name: str, window: str | None) -> list[str]:
        """The read script's keys of the ranking (or sub-ranking) kept under ``name``."""
        return [
            self.keys.scores(name, window),
            self.keys.decay(name, window),
            self.keys.hides(name),
            self.keys.pins(name),
        ]

    async def _candidates(
        self, ranking: str, window: str | None, wanted: int, now: float
    ) -> _Candidates:
        """The ranking's pins in force and its ``wanted`` best unpinned members, scored as of
        ``now``: one script call, or one per sub-ranking when it is sharded."""
        if self.shards.sharded(ranking):
            return await self._sharded_candidates(ranking, window, wanted, now)
        reply = await self._top(keys=self._top_keys(ranking, window), args=[wanted, now])
        found = _parse_top(reply, now)
        return found._replace(complete=len(found.ranked) < wanted)

    async def _sharded_candidates(
        self, ranking: str, window: str | None, wanted: int, now: float
    ) -> _Candidates:
        """:meth:`_candidates` of a sharded ranking: the ``wanted`` best of each sub-ranking,
        merged (exact: an article lives in one sub-ranking only), and the pins kept under the
        ranking's own name, each scored from its article's sub-ranking."""
        async with self._redis.pipeline(transaction=False) as pipe:
            client = script_client(pipe)
            # The ranking's own keys hold its pins and hides, and no scores: nothing wanted.
            await self._top(keys=self._top_keys(ranking, window), args=[0, now], client=client)
            for part in self.shards.parts(ranking):
                await self._top(
                    keys=self._top_keys(part, window), args=[wanted, now], client=client
                )
            own, *replies = await pipe.execute()
        pins = _parse_top(own, now).pins
        parts = [_parse_top(reply, now) for reply in replies]
        pinned = {article_id for _, article_id, _ in pins}
        merged = sorted(
            (candidate for part in parts for candidate in part.ranked),
            key=lambda candidate: (candidate[1], candidate[0]),
            reverse=True,
        )
        complete = all(len(part.ranked) < wanted for part in parts)
        if not complete:
            # Only this far is every sub-ranking read deep enough for the order to be exact.
            merged = merged[:wanted]
        if pins:
            pins = await self._pin_scores(ranking, window, pins, now)
        half_lives = [part.half_life for part in parts if part.half_life is not None]
        return _Candidates(
            pins,
            [candidate for candidate in merged if candidate[0] not in pinned],
            complete,
            half_lives[0] if half_lives else None,
            sum(part.members for part in parts),
        )

    async def _pin_scores(
        self, ranking: str, window: str | None, pins: list[Pin], now: float
    ) -> list[Pin]:
        """``pins`` of a sharded ranking, each with its article's score in its sub-ranking."""
        async with self._redis.pipeline(transaction=False) as pipe:
            client = script_client(pipe)
            for _, article_id, _ in pins:
                home = self.shards.home(ranking, article_id)
                await self._score(
                    keys=[self.keys.scores(home, window), self.keys.decay(home, window)],
                    args=[article_id],
                    client=client,
                )
            states = await pipe.execute()
        return [
            (slot, article_id, _score(stored, _decay(landmark, half_life), now))
            for (slot, article_id, _), (landmark, half_life, stored) in zip(
                pins, states, strict=True
            )
        ]

    async def _metadata(
        self, ids: list[str], fields: list[str], metadata: Metadata | None
    ) -> list[list[str | None]]:
        """``fields`` of each article in ``ids``, read in one round trip but for those already
        in ``metadata``."""
        known = {} if metadata is None else metadata.setdefault(tuple(fields), {})
        missing = [article_id for article_id in dict.fromkeys(ids) if article_id not in known]
        if missing:
            async with self._redis.pipeline(transaction=False) as pipe:
                for article_id in missing:
                    pipe.hmget(self.keys.article(article_id), fields)
                known.update(zip(missing, await pipe.execute(), strict=True))
        return [known[article_id] for article_id in ids]

    async def _fill(
        self, ranking: str, wanted: int, listed: set[str], published_after: float, now: float
    ) -> list[RankedItem]:
        """Up to ``wanted`` of the ranking's most recently published articles, newest first,
        as fill items: not in ``listed``, not hidden, not published before
        ``published_after``, and (for a section) still in that section by their metadata,
        which wins over an index entry a concurrent move left behind."""
        key = self.keys.published(ranking)
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
                    pipe.hmget(self.keys.article(article_id), _FIELDS)
                metadata = await pipe.execute()
            for article_id, (title, url, hidden, until, section, published) in zip(
                ids, metadata, strict=True
            ):
                if (
                    article_id in listed
                    or hidden_at(hidden, until, now)
                    or published is None
                    or float(published) < published_after
                    or (ranking != SITE_WIDE and section != ranking)
                ):
                    continue
                items.append(
                    RankedItem(
                        article_id,
                        0.0,
                        title,
                        url,
                        fill=True,
                        section=section,
                        published_at=float(published),
                    )
                )
                if len(items) == wanted:
                    return items
            if len(ids) < page:
                return items
            start += page
            page *= 2

    @observed("movement")
    async def movement_record(
        self,
        ranking: str,
        period: int,
        ids: list[str] | None,
        ttl_s: int,
        window: str | None = None,
    ) -> list[str] | None:
        """Record ``ids`` as the list a ranking in a window (None: the default profile) began
        movement interval ``period`` with, unless a replica did first (that record stays), and
        return the ids recorded for the interval before (None when none was)."""
        record = self.keys.movement(ranking, period, window)
        async with self._redis.pipeline(transaction=False) as pipe:
            if ids is not None:
                pipe.set(record, orjson.dumps(ids), ex=ttl_s, nx=True)
            pipe.get(self.keys.movement(ranking, period - 1, window))
            *_, previous = await pipe.execute()
        return (
            None if previous is None else [str(article_id) for article_id in orjson.loads(previous)]
        )
