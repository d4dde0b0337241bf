"""Running ranker as processes: the HTTP server, the ``--workers`` supervisor and the metrics
its workers share, and the embedded Valkey/Redis started when no ``RANKER_REDIS_URL`` is set.

Nothing is imported here.
"""
