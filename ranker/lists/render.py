"""A list as response bytes: each item's JSON rendered once a read, the answers for each limit
joined from them, with their ETag and headers, and marked stale when Redis cannot be read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import orjson
from multidict import CIMultiDict

from ranker.store.lists import RankedItem, Ranking

from .movement import moved

STALE_HEADER = "X-Ranker-Stale"
"""Set (to ``true``) on a list served from memory because Redis could not be read."""


@dataclass(frozen=True, slots=True)
class CachedList:
    """One rendered answer: the body, its strong ETag, and the response headers (copied per
    response: aiohttp adds to them)."""

    body: bytes
    etag: str
    headers: CIMultiDict[str]

    def as_stale(self, stale_if_error_s: int) -> CachedList:
        """The same answer marked stale, served while Redis cannot be read: no longer fresh
        for any cache, still good to serve on error for ``stale_if_error_s``."""
        headers = self.headers.copy()
        headers["Cache-Control"] = f"public, max-age=0, stale-if-error={stale_if_error_s}"
        headers[STALE_HEADER] = "true"
        return CachedList(self.body, self.etag, headers)


def render_items(items: Iterable[RankedItem], previous_ranks: Mapping[str, int]) -> list[bytes]:
    """Each item's JSON as it stands in every answer that lists it, best first: its rank,
    and its ``movement`` against ``previous_ranks`` (article id -> rank an interval ago)."""
    rendered = []
    for rank, item in enumerate(items, start=1):
        previous_rank = previous_ranks.get(item.article_id)
        item_json = orjson.dumps(
            {
                "rank": rank,
                "article_id": item.article_id,
                "score": item.score,
                "title": item.title,
                "url": item.url,
                "fill": item.fill,
                "pinned": item.pinned,
                "movement": moved(rank, previous_rank),
                "previous_rank": previous_rank,
            }
        )
        # orjson's bytes keep the buffer it wrote them in: 4 KiB at least, about 128 KiB for
        # an item with the longest title and URL (12x its length). Kept for a whole refresh
        # interval, an item is copied into bytes of its own size.
        rendered.append(bytes(memoryview(item_json)))
    return rendered


LIST_END = b"]}"
"""What closes an answer after its items."""


def render_head(section: str, window: str, generated_at: float, half_life_s: float) -> bytes:
    """An answer's bytes up to its items: followed by the items' JSON joined by commas and
    :data:`LIST_END`, the very bytes orjson gives for the whole answer, whichever items they
    are. ``window`` is the window's name (``default`` for the default profile)."""
    whole = orjson.dumps(
        {
            "section": section,
            "window": window,
            "generated_at": generated_at,
            "half_life_s": half_life_s,
            "items": [],
        }
    )
    return whole[: -len(LIST_END)]


def assemble(head: bytes, items: Sequence[bytes], cache_control: str) -> CachedList:
    """One answer from its head (:func:`render_head`) and its items' JSON, best first."""
    body = b"".join((head, b",".join(items), LIST_END))
    # A digest of the bytes: replicas that render the same bytes give the same ETag, so a CDN
    # in front of several of them still gets its 304s.
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    headers = CIMultiDict(
        {"Content-Type": "application/json", "ETag": etag, "Cache-Control": cache_control}
    )
    return CachedList(body, etag, headers)


class Snapshot(NamedTuple):
    """A list as last read: every limit up to ``depth`` is cut from it."""

    generated_at: float
    depth: int
    head: bytes
    items: list[bytes]  # each item's JSON, best first; fewer than depth when the list is short
    ids: frozenset[str]  # the articles those items are


def render_snapshot(
    ranking: Ranking,
    depth: int,
    previous_ranks: Mapping[str, int],
    name: str,
    window_label: str,
    generated_at: float,
    half_life_s: float,
) -> Snapshot:
    """A list's answers' parts, once a read: each item rendered once for all of them."""
    items = render_items(ranking.items[:depth], previous_ranks)
    head = render_head(name, window_label, generated_at, half_life_s)
    ids = frozenset(item.article_id for item in ranking.items[:depth])
    return Snapshot(generated_at, depth, head, items, ids)
