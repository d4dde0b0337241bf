"""Every Redis key ranker uses is spelled here and nowhere else."""

from __future__ import annotations

SHARD_SEPARATOR = "#"
"""Between a sharded ranking's name and a shard's number, in the name its keys are kept under:
never in a section slug (see ranker/config/checks.py), so no section's keys can be a shard's."""


def shard_ranking(ranking: str, shard: int) -> str:
    """The name the ``shard``-th sub-ranking of a sharded ranking keeps its scores, decay state
    and counted tokens under (``all#2``): a hash tag of its own (``{r:all#2}``), so a slot of
    its own. The ranking's pins, hides and fill index stay under the ranking's own name."""
    return f"{ranking}{SHARD_SEPARATOR}{shard}"


def unsharded(name: str) -> str:
    """The ranking a name keys are kept under belongs to: itself, or a shard's ranking."""
    return name.partition(SHARD_SEPARATOR)[0]


class Keys:
    """Key names under one prefix.

    The two keys of one ranking (its sorted set of scores and its decay state) share the hash tag
    ``{r:<ranking>}``, so the Lua script that updates both touches a single Redis Cluster slot.
    A named window's keys of a ranking carry the same hash tag (``...:w:<window>:scores``), so
    one script call updates the default profile and every window of a ranking atomically. The
    default profile's keys (``window`` None) are named as they were before windows existed.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _profile(self, ranking: str, window: str | None) -> str:
        if window is None:
            return f"{self.prefix}:{{r:{ranking}}}"
        return f"{self.prefix}:{{r:{ranking}}}:w:{window}"

    def scores(self, ranking: str, window: str | None = None) -> str:
        """Sorted set: article id -> forward-decayed score relative to the landmark of the
        ranking in a window (None: the default profile)."""
        return f"{self._profile(ranking, window)}:scores"

    def decay(self, ranking: str, window: str | None = None) -> str:
        """Hash: ``landmark`` and ``half_life`` (seconds) that a ranking's stored scores in a
        window (None: the default profile) are relative to, and when it last changed."""
        return f"{self._profile(ranking, window)}:decay"

    def applied(self, ranking: str) -> str:
        """Sorted set: the idempotency tokens of the batches already counted in this ranking,
        scored by when they may be forgotten (kept in the ranking's slot, so the increment
        script checks and records them in the same atomic step as the counts)."""
        return f"{self.prefix}:{{r:{ranking}}}:applied"

    def queued(self, ranking: str) -> str:
        """List: flushes counted in a ranking and not applied to its scores yet, oldest first,
        each its newest view's time (8 bytes) and its amounts (MessagePack), for the next flush
        that applies to take with its own (see ranker/store/lua/increment.lua)."""
        return f"{self.prefix}:{{r:{ranking}}}:queued"

    def movement(self, ranking: str, period: int, window: str | None = None) -> str:
        """String: a JSON array of the ids a ranking's list in a window (None: the default
        profile) began movement interval ``period`` with (see ranker/lists/movement.py), best first;
        expires once no interval compares with it."""
        return f"{self._profile(ranking, window)}:movement:{period}"

    def idempotency(self, token: str) -> str:
        """String: what is kept of a batch sent with an ``Idempotency-Key`` (``token``, a
        digest of the key), for the length of the idempotency window: a digest of the body the
        key was first sent with (32 hex digits), set before its views are first sent to Redis,
        then followed by its first answer (compact JSON) once they are all counted. (Versions
        that kept the answer alone named it ``<prefix>:idempotency:<token>``: neither version
        reads the other's.)"""
        return f"{self.prefix}:keyed:{token}"

    def article(self, article_id: str) -> str:
        """Hash: an article's metadata (title, url, section, published_at, hidden)."""
        return f"{self.prefix}:article:{article_id}"

    def hides(self, ranking: str) -> str:
        """Sorted set: article id -> when its hide ends (``inf``: until unhidden), for every
        article hidden by an editor, in every ranking (kept in the ranking's slot, so the read
        script can skip them). The site-wide ranking's holds every hide."""
        return f"{self.prefix}:{{r:{ranking}}}:hides"

    def pins(self, ranking: str) -> str:
        """Hash: slot (1-based position in the ranking's lists) -> JSON ``[article id, until]``
        of the article pinned there (kept in the ranking's slot, read by the read script)."""
        return f"{self.prefix}:{{r:{ranking}}}:pins"

    def changes(self) -> str:
        """Pub/sub channel: the rankings a replica just changed, for the others to refresh
        (see ranker/store/notices.py)."""
        return f"{self.prefix}:changes"

    def audit(self) -> str:
        """Stream: every editorial change, who made it, what and when, the newest
        ``RANKER_AUDIT_MAX_ENTRIES`` (about)."""
        return f"{self.prefix}:audit"

    def published(self, ranking: str) -> str:
        """Sorted set: article id -> ``published_at``, the articles a short list of this ranking
        is filled from, newest last (kept in the ranking's slot; the newest
        ``RANKER_MAX_SET_SIZE`` only)."""
        return f"{self.prefix}:{{r:{ranking}}}:published"

    def hidden_rankings(self) -> str:
        """Set: the rankings that have a set of hides, so unhiding finds them all without a SCAN
        (a replica with a newer section list may have hidden an article in one this one does
        not know)."""
        return f"{self.prefix}:hidden-rankings"

    def seen(self, shard: int, mark: str) -> str:
        """String: the token of the batch that counted a visitor's view of an article (``mark``
        is a digest of the pair), expiring with the dedup window. The marks are spread over a
        fixed number of hash tags ``{v:<shard>}``, so one script call per shard checks and
        sets all of a batch's marks there, in one Redis Cluster slot."""
        return f"{self.prefix}:{{v:{shard}}}:seen:{mark}"

    def write_check(self) -> str:
        """String: written and deleted in one transaction by every replica's background
        check, to learn whether Redis takes writes (never seen by anyone else)."""
        return f"{self.prefix}:write-check"

    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix."""
        return f"{self.prefix}:*"
