"""nginx benchmark: polls of a list through nginx's micro-cache (deploy/nginx) against the same
nginx serving the same bytes as a static file, and what the cache does to ranker's own load.

    .venv/bin/python -m benchmarks.nginx [--runs 3] [--duration 8] [--connections 64]

One nginx (one worker process), two locations: ``/v1/rankings/all?limit=10`` through the
micro-cache to ``ranker serve``, and ``/static/list.json`` holding the very bytes ranker
answered. ``wrk -t2 -c<C>`` runs alternate between the two. For each cached run, the requests
that reached ranker (from its own request counter) and ranker's CPU are measured too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import RANKING_PATH, Server, log
from benchmarks.report import Report, median, ratio
from ranker.runtime.embedded import free_port

MODULE = "benchmarks.nginx"
TEMPLATE = Path(__file__).resolve().parents[1] / "deploy/nginx/templates/ranker.conf.template"
STATIC_PATH = "/static/list.json"
ROUTE_COUNT = re.compile(
    r'^ranker_http_request_duration_seconds_count\{[^}]*route="/v1/rankings/\{section\}"[^}]*\}'
    r" (\S+)$",
    re.MULTILINE,
)


def render(upstream: str, port: int, cache_dir: Path) -> str:
    """deploy/nginx's template as the nginx image renders it (envsubst of its two variables),
    with the cache in ``cache_dir``."""
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("${RANKER_UPSTREAM}", upstream).replace("${RANKER_NGINX_PORT}", str(port))
    if "${" in text:
        raise ValueError("the template has a variable this renderer does not know")
    return text.replace("/var/cache/nginx/ranker", str(cache_dir))


def nginx_conf(prefix: Path, included: Path, *, single_process: bool, extra: str = "") -> str:
    """A whole nginx.conf around ``included`` (and ``extra`` inside ``http``), every path
    under ``prefix``; ``single_process`` for tests, one worker otherwise."""
    processes = "master_process off;" if single_process else "worker_processes 1;"
    # As root, the worker would run as nobody and could not write the cache under prefix.
    user = "user root;" if os.geteuid() == 0 and not single_process else ""
    return f"""
daemon off;
{processes}
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {included};
    {extra}
}}
"""


@contextlib.contextmanager
def nginx_server(prefix: Path, ranker: Server, body: bytes) -> Iterator[Server]:
    """nginx with the micro-cache in front of ``ranker`` and ``body`` as a static file, on
    one port."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    (prefix / "static").mkdir()
    (prefix / "static" / "list.json").write_bytes(body)
    included = prefix / "ranker.conf"
    # The static location goes into the template's server block, beside the cached ones.
    static = f"location = {STATIC_PATH} {{ root {prefix}; default_type application/json; }}"
    config = render(f"127.0.0.1:{ranker.port}", port, prefix / "cache")
    config = config.replace("    location / {", f"    {static}\n\n    location / {{", 1)
    included.write_text(config)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, included, single_process=False))
    with harness.run_server(
        "nginx", [nginx, "-c", str(conf)], env=dict(os.environ), port=port, ready_path=STATIC_PATH
    ) as server:
        yield server


def requests_seen(ranker: Server) -> float:
    """How many list requests ranker has answered (its own counter, every status)."""
    with urllib.request.urlopen(ranker.base + "/metrics") as response:
        text = response.read().decode()
    return sum(float(count) for count in ROUTE_COUNT.findall(text))


def measure(
    nginx: Server, ranker: Server, path: str, args: argparse.Namespace
) -> tuple[harness.WrkResult, float, float]:
    """One wrk run: its result, and the requests per second that reached ranker and ranker's
    CPU per second of it."""
    if args.warmup:
        harness.run_wrk(nginx.base + path, args.connections, args.warmup, 0)
    seen, cpu = requests_seen(ranker), ranker.cpu_seconds()
    result = harness.run_wrk(nginx.base + path, args.connections, args.duration, 0)
    return (
        result,
        (requests_seen(ranker) - seen) / args.duration,
        (ranker.cpu_seconds() - cpu) / args.duration,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    report = Report("nginx benchmark", MODULE, args.redis_url)
    prefix = harness.unique_prefix("nginx")
    rows: list[list[str]] = []
    rps: dict[str, list[float]] = {"cached": [], "static": []}
    with contextlib.ExitStack() as stack:
        stack.callback(harness.delete_keys, args.redis_url, prefix)
        ranker = stack.enter_context(harness.ranker_server(args.redis_url, prefix))
        harness.seed_views(ranker.base)
        with urllib.request.urlopen(ranker.base + RANKING_PATH) as response:
            body = response.read()
        temp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        nginx = stack.enter_context(nginx_server(temp, ranker, body))
        for run in range(1, args.runs + 1):
            for name, path in (("cached", RANKING_PATH), ("static", STATIC_PATH)):
                result, to_ranker, ranker_cpu = measure(nginx, ranker, path, args)
                log(f"  run {run} {name}: {result.rps:,.0f} req/s, {to_ranker:.1f} reached ranker")
                rps[name].append(result.rps)
                rows.append(
                    [
                        name,
                        str(run),
                        f"{result.rps:,.0f}",
                        f"{result.p50_ms:.2f}",
                        f"{result.p99_ms:.2f}",
                        f"{to_ranker:.1f}",
                        f"{ranker_cpu * 100:.1f}",
                        str(result.errors),
                    ]
                )
    report.add(
        "## nginx micro-cache vs nginx static",
        f"`GET {RANKING_PATH}` through deploy/nginx's micro-cache in front of `ranker serve` "
        f"(default settings: max-age 1 s), against `GET {STATIC_PATH}`, the same {len(body)} "
        "bytes as a file, from the same nginx (one worker). Each run: "
        f"`wrk -t2 -c{args.connections} -d{args.duration}s --latency <url>` after a "
        f"{args.warmup} s warm-up; runs alternate cached, static, cached, ... 'to ranker' is "
        "the list requests ranker answered per second during the run (its request counter).",
    )
    report.table(
        ["nginx", "run", "req/s", "p50 ms", "p99 ms", "to ranker /s", "ranker CPU %", "errors"],
        rows,
    )
    report.add(
        f"cached/static req/s: {ratio(median(rps['cached']), median(rps['static']))} "
        f"(medians {median(rps['cached']):,.0f} and {median(rps['static']):,.0f})"
    )
    report.print()


if __name__ == "__main__":
    main()
