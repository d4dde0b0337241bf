"""A list as response bytes: each item's JSON rendered once a read, the answers for each
selection (limit, required title, excluded articles; JSON or HTML) cut from them, with their
ETag and headers, and marked stale when Redis cannot be read."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import orjson
from multidict import CIMultiDict

from ranker.config.limits import MAX_LIMIT
from ranker.store.lists import RankedItem, Ranking

from .fragments import render_fragment
from .movement import moved

STALE_HEADER = "X-Ranker-Stale"
"""Set (to ``true``) on a list served from memory because Redis could not be read."""

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"

MAX_EXCLUDED = 10
"""The most article ids one ``exclude`` may name: an article page leaves out itself and a few
it already shows."""

GZIP_MIN_BYTES = 512
"""Answers shorter than this go uncompressed: gzip's header and trailer would eat the gain."""

_LABEL_RE = re.compile(r"\[([^\[\]\r\n]{1,32})\][ \t]*")
"""A leading label in a title, as in ``[INTERVIEW] ...``: set apart as a badge."""


class Selection(NamedTuple):
    """What one answer of a list shows: its first ``limit`` items, leaving out those without a
    title (``require_title``) and the ``excluded`` article ids, as JSON or as an HTML fragment.
    Ranks are the answer's own, 1 to ``limit``."""

    limit: int
    require_title: bool = False
    excluded: frozenset[str] = frozenset()
    html: bool = False

    @property
    def depth(self) -> int:
        """How deep the list must be read for this answer to be full when it can be: titles
        cannot be known in advance, so a selection that requires them reads the whole list."""
        if self.require_title:
            return MAX_LIMIT
        return self.limit + len(self.excluded)


class CachedList:
    """One rendered answer: the body, its weak ETag, the response headers (copied per response:
    aiohttp adds to them), and the body gzipped, made on first request and kept."""

    __slots__ = ("_gzipped", "body", "etag", "headers")

    def __init__(self, body: bytes, etag: str, headers: CIMultiDict[str]) -> None:
        self.body = body
        self.etag = etag
        self.headers = headers
        self._gzipped: bytes | None = None

    def gzipped(self) -> bytes | None:
        """The body gzipped (None when it is too short to gain): compressed once per answer,
        however many polls ask for it."""
        if len(self.body) < GZIP_MIN_BYTES:
            return None
        if self._gzipped is None:
            # mtime 0: every replica gives the same bytes for the same answer.
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped

    def as_stale(self, stale_if_error_s: int) -> CachedList:
        """The same answer marked stale, served while Redis cannot be read: no longer fresh
        for any cache, still good to serve on error for ``stale_if_error_s``."""
        headers = self.headers.copy()
        headers["Cache-Control"] = f"public, max-age=0, stale-if-error={stale_if_error_s}"
        headers[STALE_HEADER] = "true"
        stale = CachedList(self.body, self.etag, headers)
        stale._gzipped = self._gzipped
        return stale


def split_label(title: str | None) -> tuple[str | None, str | None]:
    """A title's leading label (``[INTERVIEW] Kim ...`` -> ``INTERVIEW``) and the title
    without it; (None, title) when it has none."""
    if title is None:
        return None, None
    match = _LABEL_RE.match(title)
    if match is None or match.end() == len(title) or not match.group(1).strip():
        return None, title
    return match.group(1).strip(), title[match.end() :]


def render_items(items: Iterable[RankedItem], previous_ranks: Mapping[str, int]) -> list[bytes]:
    """Each item's JSON as it stands in every answer that lists it, best first, without its
    rank (an answer's own, put first when it is cut) and with its score last (what a page does
    not show, left out of the ETag): ``movement`` is against ``previous_ranks`` (article id ->
    rank in the whole list an interval ago)."""
    rendered = []
    for rank, item in enumerate(items, start=1):
        previous_rank = previous_ranks.get(item.article_id)
        label, headline = split_label(item.title)
        item_json = orjson.dumps(
            {
                "article_id": item.article_id,
                "title": item.title,
                "label": label,
                "headline": headline,
                "url": item.url,
                "section": item.section,
                "published_at": item.published_at,
                "fill": item.fill,
                "pinned": item.pinned,
                "movement": moved(rank, previous_rank),
                "previous_rank": previous_rank,
                "score": item.score,
            }
        )
        # orjson's bytes keep the buffer it wrote them in: 4 KiB at least, about 128 KiB for
        # an item with the longest title and URL (12x its length). Kept for a whole refresh
        # interval, an item is copied into bytes of its own size.
        rendered.append(bytes(memoryview(item_json)))
    return rendered


LIST_END = b"]}"
"""What closes an answer after its items."""

_SCORE = b',"score":'


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


class Snapshot(NamedTuple):
    """A list as last read: every selection up to ``depth`` is cut from it."""

    generated_at: float
    depth: int
    head: bytes
    items: list[bytes]  # each item's JSON (see render_items); fewer than depth when short
    ids: frozenset[str]  # the articles those items are
    item_ids: list[str]  # each item's article id, in order
    titled: list[bool]  # whether each item has a title
    name: str
    window: str


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
    listed = ranking.items[:depth]
    items = render_items(listed, previous_ranks)
    head = render_head(name, window_label, generated_at, half_life_s)
    item_ids = [item.article_id for item in listed]
    titled = [item.title is not None for item in listed]
    return Snapshot(
        generated_at, depth, head, items, frozenset(item_ids), item_ids, titled, name, window_label
    )


def _chosen(snapshot: Snapshot, selection: Selection) -> list[bytes]:
    """The items an answer shows, with their ranks in it, best first."""
    if not selection.require_title and not selection.excluded:
        chosen = snapshot.items[: selection.limit]
    else:
        excluded, require_title = selection.excluded, selection.require_title
        chosen = []
        for item, article_id, titled in zip(
            snapshot.items, snapshot.item_ids, snapshot.titled, strict=True
        ):
            if article_id in excluded or (require_title and not titled):
                continue
            chosen.append(item)
            if len(chosen) == selection.limit:
                break
    return [b'{"rank":%d,' % rank + item[1:] for rank, item in enumerate(chosen, start=1)]


def _weak_etag(snapshot: Snapshot, items: Sequence[bytes], kind: bytes) -> str:
    """An ETag over what a page shows of the answer (its ranking, window, representation and
    each item but its score): a list that shows the same after a refresh keeps its ETag, so
    revalidations get their 304. A digest, not a counter: replicas that show the same list give
    the same ETag, so a CDN in front of several of them still gets its 304s."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(orjson.dumps([snapshot.name, snapshot.window]) + kind)
    for item in items:
        digest.update(item[: item.rindex(_SCORE)])
    return f'W/"{digest.hexdigest()}"'


def cut(snapshot: Snapshot, selection: Selection, cache_control: str) -> CachedList:
    """One answer of a list, as ``selection`` asks, from its last read."""
    items = _chosen(snapshot, selection)
    if selection.html:
        body = render_fragment(snapshot.name, snapshot.window, [orjson.loads(i) for i in items])
        etag, content_type = _weak_etag(snapshot, items, b"html"), HTML_TYPE
    else:
        body = b"".join((snapshot.head, b",".join(items), LIST_END))
        etag, content_type = _weak_etag(snapshot, items, b"json"), JSON_TYPE
    headers = CIMultiDict(
        {
            "Content-Type": content_type,
            "ETag": etag,
            "Cache-Control": cache_control,
            "Vary": "Accept-Encoding",
        }
    )
    return CachedList(body, etag, headers)
