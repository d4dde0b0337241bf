"""The process ``ranker serve`` (or each of its workers) runs in: its open-files limit raised,
its event loop serving the app until a signal, and its heap settled once the app has started.
The HTTP server it runs is ranker/runtime/server.py's."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ranker.config import Settings

from .server import start

# The name its log lines have always carried (this was part of ranker/server.py).
log = logging.getLogger("ranker.server")


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft
    # Linux refuses a soft limit past fs.nr_open (2**20 by default), even with no hard limit.
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-files limit from %d to %d: %s", soft, wanted, exc)
        return soft
    return wanted


def settle_heap() -> None:
    """Collect what start-up left, then exempt the rest from garbage collection for good.

    What start-up builds (modules, classes, functions, compiled patterns, the app) lives as long
    as the process, yet every full collection traversed all of it: 10-50 ms on this project's
    machine, with the event loop stopped, once or twice a second under ingest (requests waited
    behind it). Frozen, a full collection visits only what was made since.
    """
    gc.collect()
    gc.freeze()


def run(
    app: web.Application,
    settings: Settings,
    *,
    reuse_port: bool = False,
    announce: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, as ``aiohttp.web.run_app`` does, on ranker's
    server (ranker/runtime/server.py); ``kwargs`` (the access log) go to the runner."""
    raise_open_files_limit()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def serve() -> None:
        runner = await start(
            app,
            settings,
            host=settings.host,
            port=settings.port,
            reuse_port=reuse_port,
            handle_signals=True,
            **kwargs,
        )
        settle_heap()
        try:
            if announce is not None:
                announce(f"serving on http://{settings.host}:{settings.port}")
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
            _cancel_rest(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_rest(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
