"""Page views in: from a request's body to the increments a flush sends to Redis.

- ``parse``: event bodies to views, rejections and exclusions;
- ``framing``: a body's JSON or NDJSON framing into items, bad lines marked;
- ``bots``: which user agents are crawlers or headless browsers;
- ``dedup``: one view per reader and article in a window;
- ``idempotency``: ``Idempotency-Key``, so a retried batch counts once;
- ``admission``: the byte budget and each client's share of it;
- ``plan``: what one flush applies;
- ``flusher``: :class:`~ranker.ingest.flusher.Ingestor`, the group-commit loop.

Nothing is imported here: ``store`` imports ``plan``, and a face that imported the flusher
would close a cycle through the store.
"""
