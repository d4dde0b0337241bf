"""The ranked lists as readers see them: a ranking's best visible articles, filled from the newest
published when short, and the record movement compares each list with."""

from __future__ import annotations

import math
from typing import NamedTuple

import orjson

from ranker.config import SITE_WIDE
from ranker.decay import decayed

from .base import StoreBase, observed
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
        keys = [
            self.keys.scores(ranking, window),
            self.keys.decay(ranking, window),
            self.keys.hides(ranking),
            self.keys.pins(ranking),
        ]
        max_age_s = self._settings.max_age_s_for(ranking)
        fields = _FIELDS
        published_after = -math.inf if max_age_s is None else now - max_age_s
        # The ranking's hides (skipped by the script) can miss an article hidden before the
        # ranking existed; its metadata cannot. Too-old articles are known by their metadata
        # only. Read further past any such article.
        extra = 0
        while True:
            wanted = limit + extra
            landmark, half_life, members, pin_count, *flat = await self._top(
                keys=keys, args=[wanted, now]
            )
            pin_end = 3 * int(pin_count)
            # (slot, article id, stored score or None)
            pins = [(int(flat[i]), flat[i + 1], flat[i + 2]) for i in range(0, pin_end, 3)]
            candidates = [(flat[i], float(flat[i + 1])) for i in range(pin_end, len(flat), 2)]
            read = await self._metadata(
                [*(pin[1] for pin in pins), *(c[0] for c in candidates)], fields, metadata
            )
            pinned_metadata, listed_metadata = read[: len(pins)], read[len(pins) :]
            visible = [
                (article_id, stored, title, url, section, published)
                for (article_id, stored), (title, url, hidden, until, section, published) in zip(
                    candidates, listed_metadata, strict=True
                )
                if not hidden_at(hidden, until, now) and not _too_old(published, published_after)
            ]
            if landmark is None or len(visible) >= limit or len(candidates) < wanted:
                break
            extra = max(2 * extra, extra + len(candidates) - len(visible))
        decay = None if landmark is None else (float(landmark), float(half_life))
        items = [
            RankedItem(
                article_id,
                _score(stored, decay, now),
                title,
                url,
                section=section,
                published_at=_published_at(published),
            )
            for article_id, stored, title, url, section, published in visible[:limit]
        ]
        pinned = [
            (
                slot,
                RankedItem(
                    article_id,
                    _score(stored, decay, now),
                    title,
                    url,
                    pinned=True,
                    section=section,
                    published_at=_published_at(published),
                ),
            )
            for (slot, article_id, stored), (title, url, hidden, until, section, published) in zip(
                pins, pinned_metadata, strict=True
            )
            if not hidden_at(hidden, until, now)
        ]
        if len(items) < limit:
            # Every visible scored article is listed: a full list never gets here.
            listed = {item.article_id for item in items} | {item.article_id for _, item in pinned}
            items += await self._fill(ranking, limit - len(items), listed, published_after, now)
        for slot, item in sorted(pinned, key=lambda pin: pin[0]):
            items.insert(slot - 1, item)
        return Ranking(None if decay is None else decay[1], items[:limit], int(members))

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
