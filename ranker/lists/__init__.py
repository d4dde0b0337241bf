"""The lists served: kept in memory per process, refreshed in the background, rendered once.

- ``cache``: :class:`~ranker.lists.cache.RankingCache`, the lists polled and their refresh;
- ``kept``: what the cache keeps per list, and the finished answers, bounded;
- ``render``: a list as response bytes, its ETag and stale marking;
- ``movement``: rank movement against the list of one interval ago, and its records.

Nothing is imported here.
"""
