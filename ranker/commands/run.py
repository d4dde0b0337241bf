"""The client commands' arguments and how each is run: in an event loop of its own, Ctrl-C a
clean stop, a :class:`~ranker.commands.client.CommandError` a message and exit status 1."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from .client import CommandError, RankerClient
from .replay import replay
from .simulate import simulate
from .top import top

DEFAULT_URL = "http://127.0.0.1:8080"


def add_parsers(commands: Any, env: Mapping[str, str]) -> None:
    """Add ``simulate``, ``replay`` and ``top`` to the ``ranker`` command's subparsers;
    ``RANKER_TOKEN`` in ``env`` is the default token for writes."""
    token = env.get("RANKER_TOKEN") or None

    def common(parser: argparse.ArgumentParser, writes: bool) -> None:
        parser.add_argument("--url", default=DEFAULT_URL, help=f"ranker (default {DEFAULT_URL})")
        if writes:
            parser.add_argument(
                "--token", default=token, help="bearer token for writes (default $RANKER_TOKEN)"
            )

    sim = commands.add_parser(
        "simulate",
        help="send realistic traffic to a running ranker",
        description="Publish articles and send page views as a news site's analytics would, "
        "at a steady rate, until the duration is over or Ctrl-C.",
    )
    common(sim, writes=True)
    sim.add_argument("--rate", type=float, default=200.0, help="views per second (default 200)")
    sim.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    sim.add_argument("--seed", type=int, help="the same seed makes the same traffic")
    sim.add_argument("--batch", type=int, default=1000, help="views per batch at most")

    rep = commands.add_parser(
        "replay",
        help="backfill events from an NDJSON file (.gz too)",
        description="Send a file's events, each with its own ts, in chunks that are counted "
        "once however often the replay is run or resumed.",
    )
    common(rep, writes=True)
    rep.add_argument("file", type=Path, help="NDJSON of events, plain or gzipped")
    rep.add_argument("--rate", type=float, help="events per second at most (default: no limit)")
    rep.add_argument("--chunk", type=int, default=1000, help="events per request (default 1000)")
    rep.add_argument("--checkpoint", type=Path, help="file that records progress, to resume from")

    top_parser = commands.add_parser(
        "top", help="show a list in the terminal", description="A ranking's list as a table."
    )
    common(top_parser, writes=False)
    top_parser.add_argument("ranking", nargs="?", default="all", help="section or all (default)")
    top_parser.add_argument("--window", help="trending, popular, ... (default: the default)")
    top_parser.add_argument("--limit", type=int, default=10)
    top_parser.add_argument(
        "--watch", type=float, nargs="?", const=2.0, help="refresh every N seconds (default 2)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the client command ``args`` names; its exit status."""
    console = Console(stderr=True)
    commands: dict[str, Callable[[RankerClient, asyncio.Event], Awaitable[object]]] = {
        "simulate": lambda client, stop: simulate(
            client, args.rate, args.duration, seed=args.seed, batch=args.batch, stop=stop
        ),
        "replay": lambda client, stop: replay(
            client,
            args.file,
            rate=args.rate,
            chunk_size=args.chunk,
            checkpoint_path=args.checkpoint,
        ),
        "top": lambda client, stop: top(
            client,
            args.ranking,
            limit=args.limit,
            window=args.window,
            watch_s=args.watch,
            console=Console(),
        ),
    }
    try:
        asyncio.run(_with_client(args, commands[args.command]))
    except CommandError as exc:
        console.print(f"ranker {args.command}: {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


async def _with_client(
    args: argparse.Namespace, command: Callable[[RankerClient, asyncio.Event], Awaitable[object]]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if args.command == "simulate":
        # Ctrl-C ends a simulation cleanly: the batches in flight are answered, the summary
        # printed, the exit status 0.
        loop.add_signal_handler(signal.SIGINT, stop.set)
    async with RankerClient(args.url, getattr(args, "token", None)) as client:
        try:
            await command(client, stop)
        finally:
            if args.command == "simulate":
                loop.remove_signal_handler(signal.SIGINT)
    sys.stderr.flush()
