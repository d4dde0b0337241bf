"""The baseline for the ingest benchmark: the most direct way to count views in Redis.

    python -m benchmarks.naive --port P --redis-url URL --key-prefix PREFIX [--workers N]

``POST /v1/events`` takes the body ranker takes (a JSON array of events, or one event),
``orjson.loads`` it and, per event, sends one ``ZINCRBY`` to the section's sorted set and one to
the site-wide set, in one non-transactional pipeline per request; it answers
``{"accepted": n}`` once Redis has answered. No validation, no coalescing, no group commit: what
ranker does beyond this is what the comparison prices.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator

import orjson
from aiohttp import web
from redis.asyncio import Redis

from benchmarks.bare import serve_workers

HALF_LIFE_S = 7200.0
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)


def make_app(redis_url: str, prefix: str, t0: float) -> web.Application:
    """``t0`` is the forward-decay landmark: the same in every worker, so they add alike."""
    site_wide = f"{prefix}:all"

    async def post_events(request: web.Request) -> web.Response:
        events = orjson.loads(await request.read())
        if isinstance(events, dict):
            events = [events]
        now = time.time()
        async with request.app[REDIS].pipeline(transaction=False) as pipe:
            for event in events:
                amount = event.get("weight", 1) * 2 ** ((event.get("ts", now) - t0) / HALF_LIFE_S)
                pipe.zincrby(f"{prefix}:{event['section']}", amount, event["article_id"])
                pipe.zincrby(site_wide, amount, event["article_id"])
            await pipe.execute()
        return web.Response(
            body=orjson.dumps({"accepted": len(events)}), content_type="application/json"
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        # Per worker, opened in its own event loop; redis-py's default (unbounded) pool.
        app[REDIS] = Redis.from_url(redis_url)
        yield
        await app[REDIS].aclose()

    app = web.Application()
    app.cleanup_ctx.append(redis_ctx)
    app.router.add_post("/v1/events", post_events)
    app.router.add_get("/", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--key-prefix", required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes on one port")
    args = parser.parse_args()
    t0 = time.time()
    serve_workers(lambda: make_app(args.redis_url, args.key_prefix, t0), args.port, args.workers)


if __name__ == "__main__":
    main()
