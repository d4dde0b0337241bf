"""Prometheus metrics, declared against a registry owned by one app (two apps never collide)."""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_float_to_go_string

from ranker import __version__

# How prometheus-client spells a bucket bound in an `le` label (it ships no annotation).
float_to_go_string = cast(Callable[[float], str], _untyped_float_to_go_string)

# Reads are served in about a millisecond: resolve that range finely, keep a tail for stalls.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
FLUSH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)

REDIS_BACKGROUND_OPERATIONS = (
    "flush",
    "refresh",
    "ping",
    "write_check",
    "movement",
    "notice",
    "replication",
)
"""The ``operation`` labels of Redis errors outside any request (the routes add their own)."""
REPLAY_FOUND = ("answer", "flush")
"""Where a retried batch may be found counted already: the ``found`` label's values."""
EDITORIAL_ACTIONS = ("hide", "unhide", "pin", "unpin")


class RequestLatency(Collector):
    """The request latency histogram, observed without locks or label lookups.

    Every request goes through it, and prometheus-client's Histogram costs a few microseconds
    per observation (a lock per bucket and sum, label resolution): a sixth of what serving a
    cached list costs. Here an observation is one dict lookup and a bisect. Only the event loop
    thread observes and collects, so no lock is needed.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = tuple(sorted(buckets))
        self._le = [float_to_go_string(bound) for bound in self._bounds] + ["+Inf"]
        # (route, method, status) -> per-bucket counts (the last is +Inf), then the sum.
        self._series: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        series = self._series.get((route, method, status))
        if series is None:
            series = self._series[(route, method, status)] = [0] * (len(self._bounds) + 2)
        series[bisect_left(self._bounds, seconds)] += 1
        series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            self.name, self.documentation, labels=["route", "method", "status"]
        )
        for (route, method, status), series in sorted(self._series.items()):
            cumulative, buckets = 0.0, []
            for le, count in zip(self._le, series, strict=False):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric([route, method, str(status)], buckets, series[-1])
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(
            self.name, self.documentation, labels=["route", "method", "status"]
        )


class RankingAge(Collector):
    """The age of each cached ranking, worked out when it is scraped.

    A gauge set after each refresh would read about zero at every scrape (and stop growing
    exactly when refreshes stop, which is when it matters); this asks the cache instead.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self._ages: Callable[[], Mapping[tuple[str, str], float]] = dict

    def watch(self, ages: Callable[[], Mapping[tuple[str, str], float]]) -> None:
        """Report what ``ages()`` gives: (ranking, window) -> seconds since its last good
        read."""
        self._ages = ages

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["ranking", "window"])
        for (ranking, window), age in sorted(self._ages().items()):
            family.add_metric([ranking, window], age)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["ranking", "window"])


class Metrics:
    """Every metric ranker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_request_duration = RequestLatency(
            "ranker_http_request_duration_seconds",
            "HTTP request latency; its _count is the number of requests.",
            LATENCY_BUCKETS,
        )
        r.register(self.http_request_duration)
        self.events_accepted = Counter(
            "ranker_events_accepted",
            "Page-view events accepted and applied, by section.",
            ["section"],
            registry=r,
        )
        self.events_rejected = Counter(
            "ranker_events_rejected",
            "Page-view events rejected, by reason (the error code).",
            ["reason"],
            registry=r,
        )
        self.events_excluded = Counter(
            "ranker_events_excluded",
            "Valid page-view events not counted because a bot sent them, by reason:"
            " 'crawler' or 'headless_browser'.",
            ["reason"],
            registry=r,
        )
        self.editorial_changes = Counter(
            "ranker_editorial_changes",
            "Editorial changes made through this process, by action (hide, unhide, pin, unpin).",
            ["action"],
            registry=r,
        )
        self.batches_rejected = Counter(
            "ranker_event_batches_rejected",
            "Ingest requests refused whole (nothing applied), by reason (the error code).",
            ["reason"],
            registry=r,
        )
        self.batches_replayed = Counter(
            "ranker_event_batches_replayed",
            "Ingest requests retried with an Idempotency-Key already counted, by where that was"
            " found: 'answer' (the first answer was kept and sent again) or 'flush' (Redis"
            " skipped the views while applying them).",
            ["found"],
            registry=r,
        )
        self.flush_events = Histogram(
            "ranker_flush_events",
            "Views applied per successful flush to Redis.",
            buckets=FLUSH_SIZE_BUCKETS,
            registry=r,
        )
        self.flush_duration = Histogram(
            "ranker_flush_duration_seconds",
            "Time to coalesce and apply one successful flush.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.flush_queue_events = Gauge(
            "ranker_flush_queue_events",
            "Views waiting for the next flush.",
            registry=r,
        )
        self.pending_ingest_bytes = Gauge(
            "ranker_pending_ingest_bytes",
            "Bytes of write request bodies (events, article metadata) taken in and not yet "
            "answered, as unpacked.",
            registry=r,
        )
        self.ranking_age = RankingAge(
            "ranker_ranking_age_seconds",
            "Seconds since the cached lists of a ranking in a window ('default': the lists"
            " served without one) were last read from Redis.",
        )
        r.register(self.ranking_age)
        self.ranking_members = Gauge(
            "ranker_ranking_members",
            "Articles held in a ranking's sorted set in a window ('default': the lists served"
            " without one), as of the last read.",
            ["ranking", "window"],
            registry=r,
        )
        self.redis_command_duration = Histogram(
            "ranker_redis_command_duration_seconds",
            "Time for one Redis round of work (a command, script or pipeline), by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_up = Gauge(
            "ranker_redis_up",
            "1 when the last Redis command succeeded, 0 when Redis could not be reached.",
            registry=r,
        )
        self.redis_writable = Gauge(
            "ranker_redis_writable",
            "1 when Redis took the last write (or write check), 0 when it refused one: out of"
            " memory under noeviction, a read-only replica, or a failed snapshot (MISCONF).",
            registry=r,
        )
        self.change_notices = Counter(
            "ranker_change_notices",
            "Notices of changed rankings sent to the other replicas, and received from them.",
            ["direction"],
            registry=r,
        )
        self.change_subscription_up = Gauge(
            "ranker_change_subscription_up",
            "1 while this replica hears the others' change notices; 0: its lists refresh on"
            " their timers only.",
            registry=r,
        )
        self.build_info = Gauge(
            "ranker_build_info",
            "Always 1; the labels say what is running.",
            ["version", "python", "redis_version"],
            registry=r,
        )
        self._build_labels: tuple[str, str, str] | None = None
        self.set_build_info("unknown")
        self.redis_errors = Counter(
            "ranker_redis_errors",
            "Redis commands that failed, by operation.",
            ["operation"],
            registry=r,
        )

    def start_at_zero(
        self,
        *,
        sections: Iterable[str],
        rejection_codes: Iterable[str],
        exclusion_reasons: Iterable[str],
        redis_operations: Iterable[str],
    ) -> None:
        """Give every counter series whose labels are known in advance a value of 0 now.

        A series that appears only with its first increment is missed by ``rate()`` and
        ``increase()`` (they need two samples), so an alert on it would overlook the first
        rejection or error, and a dashboard would show "no data" instead of 0 (Prometheus's
        instrumentation guide: avoid missing metrics)."""
        for section in sections:
            self.events_accepted.labels(section=section)
        for code in rejection_codes:
            self.events_rejected.labels(reason=code)
        for reason in exclusion_reasons:
            self.events_excluded.labels(reason=reason)
        for found in REPLAY_FOUND:
            self.batches_replayed.labels(found=found)
        for action in EDITORIAL_ACTIONS:
            self.editorial_changes.labels(action=action)
        for operation in redis_operations:
            self.redis_errors.labels(operation=operation)
        for direction in ("sent", "received"):
            self.change_notices.labels(direction=direction)

    def set_build_info(self, redis_version: str) -> None:
        """Label ``ranker_build_info`` with the versions running, Redis's once it is known."""
        labels = (__version__, platform.python_version(), redis_version)
        if labels == self._build_labels:
            return
        if self._build_labels is not None:
            self.build_info.remove(*self._build_labels)
        self.build_info.labels(*labels).set(1)
        self._build_labels = labels
