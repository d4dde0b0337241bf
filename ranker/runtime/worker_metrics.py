"""One ``/metrics`` for all the workers of ``ranker serve --workers N``.

A scrape reaches whichever worker the kernel picks, so each worker's own numbers would make
counters jump between scrapes. Instead every worker writes a snapshot of its registry to a
directory the supervisor made, every ``SNAPSHOT_INTERVAL_S`` and when it stops, and any worker
answers a scrape with its live numbers merged with the others' snapshots: counters and
histograms summed, each gauge by the rule that makes sense for it.

A scrape shows only what is on disk: the worker answering writes its own snapshot first, then
reads every file, its own included. So a count, once shown, stays in the sums even if its
worker is killed a moment later (a scrape never shows live numbers that a crash could take
back, which Prometheus would read as a counter reset). A worker that died leaves its last
snapshot: its counts stay, while its gauges are left out once they are
``GAUGE_STALE_AFTER_S`` old. File names carry a random token as well as the pid, so a new
process that is given a dead one's pid never overwrites its counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# The name its log lines have always carried (the module was ranker/worker_metrics.py).
log = logging.getLogger("ranker.worker_metrics")

SNAPSHOT_INTERVAL_S = 1.0
GAUGE_STALE_AFTER_S = 5.0

# How the workers' values of a gauge combine; a gauge not named here is summed.
GAUGE_RULES = {
    "ranker_ranking_age_seconds": max,  # the stalest list is what ops must see
    "ranker_ranking_members": max,  # the same set, read at slightly different times
    "ranker_redis_up": min,  # down if any worker cannot reach Redis
    "ranker_redis_writable": min,  # refused if any worker's writes are
    "ranker_change_subscription_up": min,  # deaf if any worker is
    "ranker_build_info": max,
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def snapshot(registry: CollectorRegistry) -> bytes:
    """A registry's families and samples, as JSON."""
    return orjson.dumps(
        [
            {
                "name": family.name,
                "type": family.type,
                "help": family.documentation,
                "unit": family.unit,
                "samples": [[s.name, s.labels, s.value] for s in family.samples],
            }
            for family in registry.collect()
        ]
    )


@functools.cache
def _file_name(pid: int) -> str:
    # Keyed by pid, so a forked child would get a name of its own too.
    return f"{pid}-{secrets.token_hex(6)}.json"


def snapshot_path(directory: Path) -> Path:
    """This process's snapshot file."""
    return directory / _file_name(os.getpid())


def write_snapshot(registry: CollectorRegistry, directory: Path) -> None:
    """Replace this process's snapshot file atomically, so a reader never sees half of one."""
    path = snapshot_path(directory)
    partial = path.with_suffix(".tmp")
    partial.write_bytes(snapshot(registry))
    os.replace(partial, path)


async def keep_writing_snapshots(registry: CollectorRegistry, directory: Path) -> None:
    """Write a snapshot every SNAPSHOT_INTERVAL_S until cancelled, and once more then."""
    failing = False
    try:
        while True:
            try:
                write_snapshot(registry, directory)
            except OSError as exc:  # a full or vanished directory: the others see older numbers
                if not failing:
                    log.warning("cannot write the metrics snapshot to %s: %s", directory, exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
    finally:
        with contextlib.suppress(OSError):
            write_snapshot(registry, directory)


def merged_exposition(registry: CollectorRegistry, directory: Path) -> bytes:
    """Every worker's metrics merged, as text: this process's written first, so that what the
    scrape shows is all on disk."""
    write_snapshot(registry, directory)
    sources: list[tuple[list[Any], bool]] = []
    now = time.time()
    for path in directory.glob("*.json"):
        with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError):
            # A file can vanish or be replaced between listing and reading; skip it this time.
            fresh = now - path.stat().st_mtime < GAUGE_STALE_AFTER_S
            sources.append((orjson.loads(path.read_bytes()), fresh))
    merged = CollectorRegistry()
    merged.register(_Merged(sources))
    return generate_latest(merged)


class _Merged(Collector):
    def __init__(self, sources: list[tuple[list[Any], bool]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
        for families_of_one, fresh in self._sources:
            for family in families_of_one:
                name, kind = family["name"], family["type"]
                if name not in families:
                    families[name] = Metric(name, family["help"], kind, family["unit"])
                    values[name] = {}
                if kind == "gauge" and not fresh:
                    continue
                for sample_name, labels, value in family["samples"]:
                    key = (sample_name, tuple(sorted(labels.items())))
                    values[name].setdefault(key, []).append(value)
        for name, family in families.items():
            rule = GAUGE_RULES.get(name, sum) if family.type == "gauge" else sum
            for (sample_name, labels), found in values[name].items():
                # A creation time is the earliest of the workers', not their sum.
                combine = min if sample_name.endswith("_created") else rule
                family.add_sample(sample_name, dict(labels), combine(found))
            yield family
