"""Redis access: :class:`RankingStore`, joined from the parts of this package, which alone
issue Redis commands:

- ``base``: the clients, the Lua scripts (under ``lua/``, registered once there), and the timing
  and availability every operation shares;
- ``keys``: every Redis key's name;
- ``lists``: the list reads, fill and movement records;
- ``articles``: article metadata;
- ``editorial``: hides, pins and their audit log;
- ``writes``: flushes, dedup marks, kept answers, and the server checks;
- ``watch``: the background check that finds Redis down and back.

The names the other packages use are importable from here."""

from __future__ import annotations

from .articles import Article, ArticleMetadata
from .editorial import EditorialStore
from .lists import ListReads, RankedItem, Ranking
from .writes import FLUSH_IDLE_CHECK_S, FlushNotSent, Writes

__all__ = [
    "FLUSH_IDLE_CHECK_S",
    "Article",
    "FlushNotSent",
    "RankedItem",
    "Ranking",
    "RankingStore",
]


class RankingStore(ListReads, ArticleMetadata, EditorialStore, Writes):
    """Decaying rankings, article metadata and editorial controls in Redis."""
