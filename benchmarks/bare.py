"""The floor for the read benchmark: a bare aiohttp app serving fixed bytes.

    python -m benchmarks.bare --port P --body-file F [--workers N]

``GET /v1/rankings/all`` answers the contents of ``--body-file`` with ``Content-Type:
application/json`` (and any ``--header``: the read benchmark passes ranker's ``ETag`` and
``Cache-Control``, so both send the same bytes) from a plain handler: no middleware, no access
log, the default asyncio loop, as ranker runs. Whatever ranker's read endpoint costs beyond
this is ranker's own work (cache lookup, timing, ETag check); what both share is aiohttp and the
kernel.

``serve_workers`` is shared with ``benchmarks.naive``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web


def serve_workers(make_app: Callable[[], web.Application], port: int, workers: int) -> None:
    """Run ``make_app()`` in ``workers`` processes on one port with SO_REUSEPORT, as ranker's
    ``--workers`` does; the parent only waits and passes SIGTERM/SIGINT on."""

    def serve() -> None:
        web.run_app(
            make_app(),
            host="127.0.0.1",
            port=port,
            reuse_port=True,
            access_log=None,
            print=None,
        )

    if workers == 1:
        serve()
        return
    # fork: the app factory and its arguments need not be picklable, and no loop runs yet.
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=serve, daemon=True) for _ in range(workers)]
    for child in children:
        child.start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=10)


def make_app(body: bytes, headers: dict[str, str] | None = None) -> web.Application:
    fixed = {"Content-Type": "application/json", **(headers or {})}

    async def ranking(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=fixed)

    app = web.Application()
    # The same path as ranker's route (the query string plays no part in routing either).
    app.router.add_get("/v1/rankings/all", ranking)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes on one port")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a header to answer with as well (repeatable)",
    )
    args = parser.parse_args()
    body = args.body_file.read_bytes()
    headers = dict(h.split(":", 1) for h in args.header)
    serve_workers(lambda: make_app(body, headers), args.port, args.workers)


if __name__ == "__main__":
    main()
