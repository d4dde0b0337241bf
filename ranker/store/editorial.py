"""Editorial controls in Redis: hides and pins, and the audit log of every change to them.

A hide is kept three ways, each for a reader of its own: in every ranking's set of hides (the
read script skips those articles without a round trip), in the article's metadata
(``hidden_until``, which also covers a ranking created after the hide) and in the audit log. A
pin lives in its ranking's hash of pins, read in the same script call as the list. Neither is
ever rewritten when it ends: every read compares its ``until`` with the time it lists at, so
expiry shows in every replica at its next refresh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import orjson
from redis.typing import EncodableT, FieldT

from ranker.config import SITE_WIDE

from .base import Pipe, StoreBase, observed, script_client

FOREVER = math.inf
"""The ``until`` of a hide or pin that lasts until it is removed."""

LEGACY_HIDDEN = "hidden"
"""The metadata field older versions hid an article with (``"1"``: hidden until unhidden),
still set for a hide with no end."""
HIDDEN_UNTIL = "hidden_until"
"""The metadata field that says until when an article is hidden (``inf``: until unhidden)."""


def hidden_at(hidden: str | bytes | None, hidden_until: str | bytes | None, now: float) -> bool:
    """Whether an article's metadata fields ``hidden`` and ``hidden_until`` hide it at ``now``."""
    return hidden in ("1", b"1") or (hidden_until is not None and float(hidden_until) > now)


@dataclass(frozen=True, slots=True)
class Change:
    """One editorial change as the audit log keeps it: who (``actor``, the editor token's
    name or how the client was let in; ``editor``, the name the client gave, unchecked), what
    and when (``at``, epoch seconds)."""

    action: str
    actor: str
    at: float
    article_id: str | None = None
    ranking: str | None = None
    slot: int | None = None
    until: float | None = None
    editor: str | None = None
    reason: str | None = None

    def fields(self) -> dict[FieldT, EncodableT]:
        """The stream entry's fields: the set ones, as text."""
        return {
            name: repr(value) if isinstance(value, float) else str(value)
            for name, value in (
                ("action", self.action),
                ("actor", self.actor),
                ("at", self.at),
                ("article_id", self.article_id),
                ("ranking", self.ranking),
                ("slot", self.slot),
                ("until", self.until),
                ("editor", self.editor),
                ("reason", self.reason),
            )
            if value is not None
        }


@dataclass(frozen=True, slots=True)
class Pin:
    """An article pinned to a slot (1-based) of a ranking's lists until ``until``."""

    ranking: str
    slot: int
    article_id: str
    until: float


@dataclass(frozen=True, slots=True)
class PinResult:
    """What a new pin displaced: the article pinned at its slot before, and the slot of the
    same ranking the article itself was pinned to before (it is pinned once per ranking)."""

    replaced: str | None
    moved_from: int | None


class EditorialStore(StoreBase):
    """Hiding and pinning articles, and the audit log."""

    @observed("editorial")
    async def hide(self, article_id: str, until: float, change: Change, now: float) -> None:
        """Hide an article from every list until ``until`` (:data:`FOREVER`: until unhidden),
        replacing any hide it has, and record ``change``."""
        rankings = await self._every_ranking()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(self.keys.hidden_rankings(), *rankings)
            for ranking in rankings:
                hides = self.keys.hides(ranking)
                pipe.zadd(hides, {article_id: until})
                # Hides that have ended are dropped on the way: reads ignore them already.
                pipe.zremrangebyscore(hides, "-inf", now)
            article = self.keys.article(article_id)
            pipe.hset(article, HIDDEN_UNTIL, repr(until))
            if until == FOREVER:
                # Also as older versions hide: replicas still on one during a rolling deploy
                # keep a pulled story out too. They know no ends, so a hide with one is not
                # marked so (nor is a forever hide it replaces left marked).
                pipe.hset(article, LEGACY_HIDDEN, "1")
            else:
                pipe.hdel(article, LEGACY_HIDDEN)
            # Kept while the hide is: unhiding reads it (metadata events made would expire).
            pipe.persist(article)
            self._record(pipe, change)
            await pipe.execute()

    @observed("editorial")
    async def known(self, article_id: str) -> bool:
        """Whether ranker knows an article: it has metadata, or a score in some ranking. Cheap
        (no script, one round trip), unlike reading the article."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.article(article_id))
            for window in self._settings.profiles:
                for ranking in self._settings.rankings:
                    home = self.shards.home(ranking, article_id)
                    pipe.zscore(self.keys.scores(home, window), article_id)
            exists, *scores = await pipe.execute()
        return bool(exists) or any(score is not None for score in scores)

    @observed("editorial")
    async def unhide(self, article_id: str, change: Change, now: float) -> bool:
        """End an article's hide and record ``change``. False, recording nothing, when it is
        not hidden."""
        article = self.keys.article(article_id)
        hidden, hidden_until = await self._redis.hmget(article, [LEGACY_HIDDEN, HIDDEN_UNTIL])
        if not hidden_at(hidden, hidden_until, now):
            return False
        rankings = await self._every_ranking()
        async with self._redis.pipeline(transaction=False) as pipe:
            for ranking in rankings:
                pipe.zrem(self.keys.hides(ranking), article_id)
            pipe.hdel(article, LEGACY_HIDDEN, HIDDEN_UNTIL)
            self._record(pipe, change)
            await pipe.execute()
        return True

    @observed("editorial")
    async def pin(self, pin: Pin, change: Change, now: float) -> PinResult:
        """Pin an article to a slot of a ranking's lists, in place of any article pinned
        there, and record ``change``."""
        until = None if pin.until == FOREVER else pin.until
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._pin(
                keys=[self.keys.pins(pin.ranking)],
                args=[pin.slot, orjson.dumps([pin.article_id, until]), pin.article_id, now],
                client=script_client(pipe),
            )
            self._record(pipe, change)
            (replaced, moved_from), _ = await pipe.execute()
        return PinResult(
            None if replaced is None else str(replaced),
            None if moved_from is None else int(moved_from),
        )

    @observed("editorial")
    async def unpin(self, ranking: str, slot: int, change: Change, now: float) -> str | None:
        """Remove the pin at a slot and record ``change``, with the article that was pinned
        there (which the caller does not know): that article, or None, recording nothing, when
        no pin is (or its time is past)."""
        key = self.keys.pins(ranking)
        stored = await self._redis.hget(key, str(slot))
        pin = None if stored is None else _decode_pin(ranking, slot, stored)
        if pin is None or pin.until <= now:
            return None
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(key, str(slot))
            self._record(pipe, replace(change, article_id=pin.article_id))
            await pipe.execute()
        return pin.article_id

    @observed("editorial")
    async def active(self, now: float) -> tuple[list[tuple[str, float]], list[Pin]]:
        """The hides and pins in force at ``now``: (article id, until) soonest ending first,
        and every configured ranking's pins, by ranking and slot."""
        rankings = self._settings.rankings
        async with self._redis.pipeline(transaction=False) as pipe:
            # The site-wide ranking's set holds every hide.
            pipe.zrangebyscore(self.keys.hides(SITE_WIDE), f"({now!r}", "+inf", withscores=True)
            for ranking in rankings:
                pipe.hgetall(self.keys.pins(ranking))
            hides, *pin_maps = await pipe.execute()
        pins = [
            pin
            for ranking, stored in zip(rankings, pin_maps, strict=True)
            for slot, value in stored.items()
            if (pin := _decode_pin(ranking, int(slot), value)).until > now
        ]
        pins.sort(key=lambda pin: (rankings.index(pin.ranking), pin.slot))
        return [(str(article_id), float(until)) for article_id, until in hides], pins

    @observed("audit")
    async def audit_log(self, limit: int, before: str | None) -> list[tuple[str, dict[str, str]]]:
        """Up to ``limit`` audit entries, newest first, older than the entry id ``before``
        when given: (entry id, fields)."""
        if before is not None and _entry_id(before) == (0, 0):
            return []  # nothing is older than the first id there can be
        newest = "+" if before is None else f"({before}"
        entries = await self._redis.xrevrange(self.keys.audit(), newest, "-", count=limit)
        # str already: decode_responses
        return [
            (str(entry_id), {str(name): str(value) for name, value in (fields or {}).items()})
            for entry_id, fields in entries or ()
        ]

    async def _every_ranking(self) -> Sequence[str]:
        # Also the rankings this process is not configured with (a replica with a newer
        # section list may have hidden an article there): a hide must end in every one.
        known = await self._redis.smembers(self.keys.hidden_rankings())
        return sorted(set(self._settings.rankings) | {str(name) for name in known})

    def _record(self, pipe: Pipe, change: Change) -> None:
        pipe.xadd(
            self.keys.audit(),
            change.fields(),
            maxlen=self._settings.audit_max_entries,
            approximate=True,
        )


def _entry_id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence)


def _decode_pin(ranking: str, slot: int, stored: str | bytes) -> Pin:
    article_id, until = orjson.loads(stored)
    return Pin(ranking, slot, str(article_id), FOREVER if until is None else float(until))
