"""Reader dedup: a visitor's views of one article count once per window, in every replica.

The marks live in Redis, one key per (visitor, article) pair, set with ``SET NX EX`` so they
expire with the window (``RANKER_DEDUP_WINDOW_S``). A pair's key name holds a digest of it,
never the ids as sent. The keys are spread over :data:`SHARDS` hash tags: the marks cannot
share a ranking's slot (a pair belongs to no one ranking), so they are checked in a step of
their own before the views are queued, one script call per shard in one pipeline.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

from redis.exceptions import RedisError

from ranker.errors import StoreUnavailable
from ranker.store import RankingStore

from .parse import View

DUPLICATE_READER: Final = "duplicate_reader"
"""The reason, in the answer's ``excluded`` and the excluded-events metric, a visitor's repeat
view of an article within the window is not counted."""

SHARDS: Final = 16
"""Hash tags the marks are spread over: a batch's marks cost at most this many script calls,
and a Redis Cluster spreads them over as many slots."""


def mark(visitor_id: str, article_id: str) -> tuple[int, str]:
    """A (visitor, article) pair's shard and digest. The section is not part of it: a reader
    who finds the same story in two sections has read it once."""
    # An article id holds no NUL, so the pair reads back one way only.
    pair = f"{article_id}\0{visitor_id}".encode()
    digest = hashlib.blake2b(pair, digest_size=16, person=b"ranker-seen").hexdigest()
    return int(digest[:2], 16) % SHARDS, digest


def batch_token(idempotency_token: str | None) -> str:
    """What a batch's marks hold: its Idempotency-Key's token, so a retry of it counts the
    views its first try marked; else a token of its own."""
    return idempotency_token if idempotency_token is not None else uuid.uuid4().hex


async def count_once(
    store: RankingStore, views: list[View], visitors: list[tuple[int, str]], token: str
) -> tuple[list[View], int]:
    """The views that count, and how many were left out as a reader's repeats.

    ``visitors`` are (index into ``views``, visitor id) for the views that carry one; the
    others always count. Repeats within the batch are found here, the rest in Redis.
    Raises :class:`StoreUnavailable` when Redis does not answer (nothing is counted then).
    """
    first: dict[str, tuple[int, int]] = {}  # digest -> (shard, index of its first view)
    dropped: set[int] = set()
    for index, visitor_id in visitors:
        shard, digest = mark(visitor_id, views[index][0])
        if digest in first:
            dropped.add(index)
        else:
            first[digest] = (shard, index)
    by_shard: dict[int, list[str]] = {}
    for digest, (shard, _) in first.items():
        by_shard.setdefault(shard, []).append(digest)
    try:
        counted = await store.claim_views(by_shard, token)
    except RedisError as exc:
        raise StoreUnavailable(
            f"Redis did not answer the reader dedup step ({type(exc).__name__}); nothing was "
            "counted"
        ) from None
    dropped.update(index for digest, (_, index) in first.items() if digest not in counted)
    if not dropped:
        return views, 0
    return [view for index, view in enumerate(views) if index not in dropped], len(dropped)
