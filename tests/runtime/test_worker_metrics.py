"""Metrics shared by workers: any worker's /metrics answers for all of them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.parser import text_string_to_metric_families

from ranker.api.appkeys import METRICS
from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime import worker_metrics
from ranker.runtime.worker_metrics import merged_exposition, snapshot
from tests.conftest import AiohttpClient


def values(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = text.decode() if isinstance(text, bytes) else text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def worker_registry(events: float, queue: float, age: float, up: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("ranker_events_accepted", "e", ["section"], registry=registry).labels("sports").inc(
        events
    )
    Gauge("ranker_flush_queue_events", "q", registry=registry).set(queue)
    Gauge("ranker_ranking_age_seconds", "a", ["ranking"], registry=registry).labels("all").set(age)
    Gauge("ranker_redis_up", "u", registry=registry).set(up)
    return registry


def write_as(pid: int, registry: CollectorRegistry, directory: Path, age_s: float = 0.0) -> None:
    """A snapshot as another worker (``pid``) would have written it, ``age_s`` ago."""
    path = directory / f"{pid}.json"
    path.write_bytes(snapshot(registry))
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_counters_add_up_and_each_gauge_merges_by_its_rule(tmp_path: Path) -> None:
    write_as(1, worker_registry(events=5, queue=100, age=0.5, up=1), tmp_path)
    write_as(2, worker_registry(events=7, queue=10, age=3.0, up=0), tmp_path)
    own = worker_registry(events=1, queue=1, age=1.0, up=1)
    got = values(merged_exposition(own, tmp_path))
    assert got[("ranker_events_accepted_total", (("section", "sports"),))] == 13
    assert got[("ranker_flush_queue_events", ())] == 111
    assert got[("ranker_ranking_age_seconds", (("ranking", "all"),))] == 3.0
    assert got[("ranker_redis_up", ())] == 0
    created = got[("ranker_events_accepted_created", (("section", "sports"),))]
    assert created <= time.time()


def test_a_dead_workers_counts_stay_and_its_gauges_go(tmp_path: Path) -> None:
    stale = worker_metrics.GAUGE_STALE_AFTER_S + 5
    write_as(1, worker_registry(events=5, queue=100, age=60, up=0), tmp_path, age_s=stale)
    own = worker_registry(events=1, queue=1, age=1.0, up=1)
    got = values(merged_exposition(own, tmp_path))
    assert got[("ranker_events_accepted_total", (("section", "sports"),))] == 6
    assert got[("ranker_flush_queue_events", ())] == 1
    assert got[("ranker_ranking_age_seconds", (("ranking", "all"),))] == 1.0
    assert got[("ranker_redis_up", ())] == 1


async def test_each_app_answers_for_both(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    first = await aiohttp_client(create_app(settings, metrics_dir=tmp_path))
    second_app = create_app(settings, metrics_dir=tmp_path)
    # Two apps in one process share a pid: file the second one's numbers under another.
    second_app[METRICS].events_accepted.labels(section="world").inc(4)
    write_as(99_999_999, second_app[METRICS].registry, tmp_path)
    response = await first.post("/v1/events", json=[{"article_id": "a", "section": "world"}])
    assert response.status == 200
    got = values(await (await first.get("/metrics")).text())
    assert got[("ranker_events_accepted_total", (("section", "world"),))] == 5
    assert own_snapshot_written(tmp_path)


def own_snapshot_written(directory: Path) -> bool:
    """The app writes its own snapshot, for the others to read."""
    return any(directory.glob(f"{os.getpid()}-*.json"))


def test_what_a_scrape_showed_survives_its_worker_being_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two workers, played in one process by giving each its own file name in turn.
    first, second = CollectorRegistry(), CollectorRegistry()
    counted = Counter("ranker_events_accepted", "e", ["section"], registry=first)
    counted.labels("sports").inc(10)
    Counter("ranker_events_accepted", "e", ["section"], registry=second).labels("sports").inc(5)
    key = ("ranker_events_accepted_total", (("section", "sports"),))
    monkeypatch.setattr(worker_metrics, "snapshot_path", lambda d: d / "2-b.json")
    merged_exposition(second, tmp_path)
    monkeypatch.setattr(worker_metrics, "snapshot_path", lambda d: d / "1-a.json")
    shown = values(merged_exposition(first, tmp_path))[key]
    # The first worker counts more, then is killed before it writes another snapshot.
    counted.labels("sports").inc(7)
    monkeypatch.setattr(worker_metrics, "snapshot_path", lambda d: d / "2-b.json")
    after = values(merged_exposition(second, tmp_path))[key]
    assert shown == 15  # its own 10 (written before being shown) and the other's 5
    assert after == shown  # never less, which Prometheus would take for a counter reset
