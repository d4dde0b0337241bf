"""The benchmarks' own machinery: parsers, the load they generate, the baseline servers.

Only behaviour is checked here, never a performance number: those depend on the machine.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from benchmarks import bare, harness, hostile, increments, naive
from benchmarks.ingest import WithUserAgents, in_app_user_agent, parse_redis_benchmark
from benchmarks.report import Report, percentile
from ranker.config import DEFAULT_SECTIONS
from ranker.ingest.bots import bot_reason
from tests.conftest import AiohttpClient

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:40000/v1/rankings/all?limit=10
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    26.62ms   10.49ms 108.21ms   71.69%
    Req/Sec     1.21k   186.00     1.60k    66.67%
  Latency Distribution
     50%  750.00us
     75%   30.11ms
     90%   39.92ms
     99%    1.20s
  7262 requests in 3.01s, 14.34MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   2412.55
Transfer/sec:      4.76MB
"""


def test_parse_wrk_reads_rate_latencies_in_their_units_and_every_error() -> None:
    result = harness.parse_wrk(WRK_OUTPUT)
    assert result == harness.WrkResult(2412.55, 0.75, 1200.0, 7262, 9)


def test_parse_wrk_without_errors_counts_none() -> None:
    output = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    assert harness.parse_wrk(output).errors == 0


def test_parse_wrk_refuses_output_it_does_not_understand() -> None:
    with pytest.raises(ValueError, match="wrk"):
        harness.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_parse_redis_benchmark_takes_the_final_figure_past_progress_lines() -> None:
    output = (
        "zincrby k 1 __rand_int__: rps=512000.0 (overall: 498000.1) avg_msec=3.1\r"
        "zincrby k 1 __rand_int__: 646193.56 requests per second, p50=4.095 msec\n"
    )
    assert parse_redis_benchmark(output) == 646193.56


def test_zipf_batches_are_500_to_1000_views_over_every_section_and_never_ahead() -> None:
    zipf = harness.Zipf(seed=3)
    before = time.time()
    batches = [orjson.loads(body) for body in zipf.pool(20)]
    assert all(500 <= len(batch) <= 1000 for batch in batches)
    events = [event for batch in batches for event in batch]
    assert {event["section"] for event in events} == set(DEFAULT_SECTIONS)
    assert all(before <= event["ts"] <= time.time() for event in events)
    counts = Counter(event["article_id"] for event in events)
    # Zipf: the top article alone is a sizeable share, and many articles appear at all.
    assert counts.most_common(1)[0][0] == "bench-story-00000"
    assert len(counts) > 1000


def test_zipf_metadata_batches_carry_titles_and_urls() -> None:
    event = orjson.loads(harness.Zipf(seed=1).batch(size=1, metadata=True))[0]
    assert event["title"]
    assert event["url"].startswith("https://")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([5.0], 99) == 5.0


def test_tree_cpu_seconds_counts_this_process() -> None:
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert harness.tree_cpu_seconds(os.getpid()) > 0


def test_report_starts_with_the_machine(redis_url: str) -> None:
    report = Report("Title", "benchmarks.x", redis_url)
    text = "\n".join(report.lines)
    for row in ("nproc", "kernel", "aiohttp", "redis-py", "Redis server", "wrk"):
        assert f"| {row} |" in text


async def test_bare_serves_the_body_as_json(aiohttp_client: AiohttpClient) -> None:
    body = b'{"section":"all","items":[]}'
    client = await aiohttp_client(bare.make_app(body))
    response = await client.get(harness.RANKING_PATH)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert await response.read() == body


async def test_naive_counts_each_event_in_its_section_and_site_wide(
    aiohttp_client: AiohttpClient, redis: Redis, redis_url: str, key_prefix: str
) -> None:
    now = time.time()
    client = await aiohttp_client(naive.make_app(redis_url, key_prefix, t0=now))
    events = [
        {"article_id": "a", "section": "sports", "ts": now},
        {"article_id": "a", "section": "sports", "ts": now, "weight": 2},
        {"article_id": "b", "section": "world", "ts": now + naive.HALF_LIFE_S},
    ]
    response = await client.post("/v1/events", data=orjson.dumps(events))
    assert await response.json() == {"accepted": 3}
    assert await redis.zscore(f"{key_prefix}:sports", "a") == pytest.approx(3.0)
    assert await redis.zscore(f"{key_prefix}:all", "b") == pytest.approx(2.0)


def test_delete_keys_deletes_only_the_prefix(redis_url: str, key_prefix: str) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.set(f"{key_prefix}:one", 1)
        client.set(f"{key_prefix}x:other", 1)
        assert harness.delete_keys(redis_url, key_prefix) == 1
        assert client.exists(f"{key_prefix}x:other") == 1
    finally:
        client.delete(f"{key_prefix}x:other")
        client.close()


def test_servers_are_stopped_with_their_workers(tmp_path: Path) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_bytes(b"{}")
    args = ("--body-file", str(body_file))
    with harness.python_server(
        "bare", "benchmarks.bare", *args, workers=2, ready_path=harness.RANKING_PATH
    ) as server:
        assert harness.listening_sockets(server.port) == 2
        group = server.process.pid
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)


def test_in_app_user_agents_are_distinct_realistic_and_no_bots() -> None:
    rng = random.Random(5)
    agents = [in_app_user_agent(rng) for _ in range(500)]
    assert len(set(agents)) == len(agents)
    assert all(120 <= len(agent) <= 300 for agent in agents)
    assert all(agent.startswith("Mozilla/5.0 (") for agent in agents)
    assert all(bot_reason(agent) is None for agent in agents)
    for app in ("KAKAOTALK", "NAVER(inapp", "FBAN/FBIOS", "Instagram", "Line/", "Whale/"):
        assert any(app in agent for agent in agents), app


@pytest.mark.parametrize(("repeated", "distinct"), [(0, True), (50, False)])
def test_user_agent_batches_are_the_same_views_with_a_user_agent_each(
    repeated: int, distinct: bool
) -> None:
    plain = [orjson.loads(body) for body in harness.Zipf(seed=4).pool(3)]
    with_agents = [orjson.loads(body) for body in WithUserAgents(seed=4, repeated=repeated).pool(3)]
    for batch, agents_batch in zip(plain, with_agents, strict=True):
        assert [(e["article_id"], e["section"]) for e in batch] == [
            (e["article_id"], e["section"]) for e in agents_batch
        ]
    agents = [event["user_agent"] for batch in with_agents for event in batch]
    assert (len(set(agents)) == len(agents)) is distinct
    if not distinct:
        assert len(set(agents)) <= repeated


def test_hostile_batches_fit_the_default_body_limit_and_hold_what_they_say() -> None:
    rng = random.Random(6)
    for name, make in hostile.BATCHES.items():
        body, content_type = make(rng)
        assert len(body) <= 1024 * 1024, name
        if content_type == "application/json":
            events = orjson.loads(body)
            agents = [event["user_agent"] for event in events]
            assert len(set(agents)) == len(agents) > 900, name
        else:
            assert body.count(b"\n") > 500_000


def test_increment_forms_store_what_the_current_script_stores() -> None:
    # Private servers of its own (redis-server and the wheel's Valkey), tiny sets and flushes.
    args = increments.parse_args(
        ["--runs", "1", "--sizes", "10,40", "--rankings", "3", "--members", "30-60", "--min", "1"]
    )
    reports: list[Report] = []
    rows = increments.run(args, reports.append)
    assert {row.server for row in rows} == {"redis", "valkey"}
    assert len(rows) == 2 * 2 * len(increments.FORMS)
    for row in rows:
        if row.form == "a":
            # The current script's sums are Python's: old + amount * factor, every one.
            counted = re.fullmatch(
                r"\(reference; (\d+) of (\d+) equal to Python's sums\)", row.exact
            )
            assert counted is not None, row
            assert counted[1] == counted[2] != "0", row
        elif row.form in ("y", "z"):  # no sums: measures of parts, not forms
            assert row.exact.startswith("no"), row
        else:
            assert row.exact == "yes", row
    assert "| server | form | increments |" in "\n".join(reports[0].lines)


def run_benchmark(module: str, *args: str) -> str:
    """A benchmark run end to end, briefly: its Markdown report (stdout)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_capacity_benchmark_compares_a_node_and_a_cluster_and_prices_an_article() -> None:
    report = run_benchmark(
        "benchmarks.capacity", "--runs", "1", "--duration", "1", "--warmup", "0",
        "--articles", "200", "--also", "RANKER_SITE_SHARDS=2",
    )  # fmt: skip
    for heading in ("## Ingest: 1 node vs 3-master cluster", "## Reads:", "## Memory per"):
        assert heading in report
    assert "failed requests in all runs: 0" in report
    for name in ("3-master cluster", "3-master cluster, RANKER_SITE_SHARDS=2"):
        assert re.search(rf"\| {name} \| 1 \| [\d,]+ \| [\d.]+ \| [\d.]+ / [\d.]+ / ", report)
    # Where the site-wide ranking's scores are: one master, then the two of its sub-rankings.
    assert re.search(r"scores on master \d\)", report)
    assert re.search(r"scores on master \d, \d\)", report)
    # Every scores key of the section and the site-wide ranking holds every article.
    assert len(re.findall(r"^\| `(national|all)` \w+ \| 200 \|", report, re.M)) == 6
    assert "| article metadata hashes | 200 |" in report


def test_the_freshness_benchmark_runs_on_a_cluster() -> None:
    report = run_benchmark(
        "benchmarks.freshness", "--cluster", "--samples", "3", "--max-gap", "0.2"
    )
    assert "a private 3-master Redis Cluster" in report
    assert "| samples listed | 3 of 3 | 3 of 3 |" in report
