"""The ``ranker`` command. The one place that reads the environment."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ranker import __version__, config
from ranker.app import create_app
from ranker.commands import run as client_commands
from ranker.config import ConfigError, Settings
from ranker.logs import access_log_options, configure_logging
from ranker.runtime import process as server_process
from ranker.runtime.cluster import run_dev_cluster
from ranker.runtime.embedded import EmbeddedRedis, EmbeddedServerError
from ranker.runtime.workers import PortInUse, check_port_is_free, serve_workers

log = logging.getLogger("ranker")

SERVE_EPILOG = """\
settings come from RANKER_* environment variables (all in docs/settings.md); the most used:
  RANKER_REDIS_URL    Redis to use, e.g. redis://127.0.0.1:6379/0. Unset: start a private
                      server with append-only persistence under RANKER_DATA_DIR.
  RANKER_HOST         address to listen on (default 127.0.0.1)
  RANKER_PORT         port to listen on (default 8080)
  RANKER_WORKERS      processes serving the port (default 1)
  RANKER_HALF_LIFE_S  half-life of a view's weight, seconds (default 7200)
  RANKER_SECTIONS     comma-separated section slugs
  RANKER_WRITE_TOKENS bearer tokens that may write, comma-separated. Unset: only
                      clients on this host may write (POST /v1/events, PUT /v1/articles)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ranker", description="Real-time headline ranking service for news sites."
    )
    parser.add_argument("--version", action="version", version=f"ranker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service until SIGINT or SIGTERM.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="listen address (overrides RANKER_HOST)")
    serve.add_argument("--port", type=int, help="listen port (overrides RANKER_PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes serving the port, e.g. one per core (overrides RANKER_WORKERS; default 1)",
    )
    client_commands.add_parsers(commands, os.environ)
    dev_cluster = commands.add_parser(
        "dev-cluster",
        help="run a local Redis Cluster (3 masters, 3 replicas) until Ctrl-C",
        description="Start 3 masters and 3 replicas of redis-server with --cluster-enabled on "
        "free loopback ports, join them, print their URLs, and stop them all on Ctrl-C.",
    )
    dev_cluster.add_argument(
        "--dir", type=Path, default=Path("ranker-cluster"), help="data directory of the nodes"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "dev-cluster":
        return run_dev_cluster(args.dir)
    if args.command != "serve":
        return client_commands.run(args)
    try:
        settings = config.from_env(os.environ)
        given = (("host", args.host), ("port", args.port), ("workers", args.workers))
        overrides = {name: value for name, value in given if value is not None}
        settings = dataclasses.replace(settings, **overrides)
    except ConfigError as exc:
        print(f"ranker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    return serve(settings)


def serve(settings: Settings) -> int:
    """Run the service, starting and stopping the embedded Redis when no URL is configured."""
    try:
        # Before anything starts: an address that does not resolve or a port already taken
        # is a clear error now, not a traceback (or a wait) later.
        check_port_is_free(settings.host, settings.port)
    except (PortInUse, OSError) as exc:
        print(f"ranker: RANKER_HOST/RANKER_PORT (or --host/--port): {exc}", file=sys.stderr)
        return 1
    if settings.redis_url is not None:
        try:
            check_redis(settings)
        except ConfigError as exc:
            print(f"ranker: configuration error: {exc}", file=sys.stderr)
            return 2
    with contextlib.ExitStack() as stack:
        if settings.redis_url is None:
            try:
                server = EmbeddedRedis(settings.data_dir, binary=settings.redis_server)
                server.start()
            except EmbeddedServerError as exc:
                print(f"ranker: {exc}", file=sys.stderr)
                return 1
            except OSError as exc:
                print(
                    f"ranker: RANKER_DATA_DIR: cannot use {settings.data_dir}: {exc}",
                    file=sys.stderr,
                )
                return 1
            stack.callback(server.stop)
            log.info(
                "RANKER_REDIS_URL is unset: started %s at %s, data in %s",
                os.path.basename(server.binary),
                server.url,
                server.data_dir,
            )
            settings = dataclasses.replace(settings, redis_url=server.url)
        if settings.workers > 1:
            status = serve_workers(settings, settings.workers)
            log.info("stopped")
            return status
        server_process.run(
            create_app(settings),
            settings,
            announce=lambda message: log.info("%s", message),
            **access_log_options(settings),
        )
        log.info("stopped")
    return 0


def _is_cluster_node(client: redis.Redis) -> bool:
    """Whether the server is a node of a Redis Cluster (an ACL that forbids INFO: taken for
    not)."""
    with contextlib.suppress(redis.ResponseError):
        return bool(client.info("cluster").get("cluster_enabled") == 1)
    return False


def check_redis(settings: Settings) -> None:
    """Raise :class:`ConfigError` when the Redis at ``RANKER_REDIS_URL`` answers but refuses
    this service for good: a wrong user or password (``WRONGPASS``, ``NOAUTH``), a database it
    does not have, a command its ACL forbids; or a cluster node without
    ``RANKER_REDIS_CLUSTER=true`` (most writes would be refused with ``MOVED``), or a Redis
    without cluster mode with it. Retrying those, as the service retries an outage, would never
    end; a Redis that does not answer is an outage, and start-up goes on. In cluster mode the
    first node that answers is checked."""
    for url in settings.redis_urls:
        if _check_node(url, settings):
            return


def _check_node(url: str, settings: Settings) -> bool:
    """Check the Redis at ``url``; False when it does not answer."""
    client = redis.Redis.from_url(
        url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
        cluster = _is_cluster_node(client)
    except redis.AuthenticationError as exc:  # a ConnectionError, but no outage
        raise ConfigError(f"RANKER_REDIS_URL: Redis refused the credentials: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        log.warning("Redis does not answer yet (%s); starting anyway", exc)
        return False
    except redis.ResponseError as exc:
        # Connecting selects the database, and may authenticate: either can be refused.
        raise ConfigError(f"RANKER_REDIS_URL: Redis refused the connection: {exc}") from None
    finally:
        client.close()
    # The URL is not echoed: it may hold a password.
    if cluster and not settings.redis_cluster:
        raise ConfigError(
            "RANKER_REDIS_URL is a Redis Cluster node (cluster_enabled:1), where most of "
            "ranker's writes would be refused (MOVED): set RANKER_REDIS_CLUSTER=true"
        )
    if settings.redis_cluster and not cluster:
        raise ConfigError(
            "RANKER_REDIS_CLUSTER=true, but RANKER_REDIS_URL is a Redis without cluster mode "
            "(cluster_enabled:0): unset RANKER_REDIS_CLUSTER"
        )
    return True
