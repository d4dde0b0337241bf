"""The lock-free request histogram must expose exactly what prometheus-client's would."""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ranker.api.appkeys import METRICS
from ranker.app import create_app
from ranker.config import Settings
from ranker.ingest import parse as events
from ranker.ingest.parse import REJECTION_CODES
from ranker.metrics import LATENCY_BUCKETS, Metrics, RequestLatency

LABELS = [
    ("/v1/rankings/{section}", "GET", 200),
    ("/v1/rankings/{section}", "GET", 304),
    ("/v1/events", "POST", 503),
]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_request_latency_matches_prometheus_clients_histogram() -> None:
    ours_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    ours = RequestLatency("t_seconds", "t", LATENCY_BUCKETS)
    ours_registry.register(ours)
    reference = Histogram(
        "t_seconds",
        "t",
        ["route", "method", "status"],
        buckets=LATENCY_BUCKETS,
        registry=reference_registry,
    )
    rng = random.Random(7)
    # Bucket bounds themselves included: a value equal to a bound falls in that bucket.
    values = [*LATENCY_BUCKETS, 0.0, 10.0, *(rng.expovariate(500) for _ in range(2000))]
    for value in values:
        route, method, status = rng.choice(LABELS)
        ours.observe(route, method, status, value)
        reference.labels(route=route, method=method, status=str(status)).observe(value)
    got, expected = samples(ours_registry), samples(reference_registry)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_an_app_with_no_requests_still_declares_the_histogram() -> None:
    text = generate_latest(Metrics().registry).decode()
    assert "# TYPE ranker_http_request_duration_seconds histogram" in text


def test_a_fresh_app_exports_its_known_counter_series_at_zero(
    make_settings: Callable[..., Settings],
) -> None:
    # Before any event, error or replay: rate() needs the 0 to see the first one.
    app = create_app(make_settings(sections=("sports", "world")))
    got = samples(app[METRICS].registry)

    def zero(name: str, **labels: str) -> bool:
        return got.get((name, tuple(sorted(labels.items())))) == 0.0

    assert all(zero("ranker_events_rejected_total", reason=code) for code in REJECTION_CODES)
    assert zero("ranker_events_rejected_total", reason="unknown_section")
    for found in ("answer", "flush"):
        assert zero("ranker_event_batches_replayed_total", found=found)
    for operation in ("flush", "refresh", "ping", "/v1/events", "/v1/rankings/{section}"):
        assert zero("ranker_redis_errors_total", operation=operation)
    assert zero("ranker_redis_errors_total", operation="/v1/articles/{article_id}")
    for reason in ("crawler", "headless_browser", "duplicate_reader"):
        assert zero("ranker_events_excluded_total", reason=reason)
    for section in ("sports", "world"):
        assert zero("ranker_events_accepted_total", section=section)
    for action in ("hide", "unhide", "pin", "unpin"):
        assert zero("ranker_editorial_changes_total", action=action)
    # Routes that never touch Redis get no series of Redis errors.
    assert ("ranker_redis_errors_total", (("operation", "/healthz"),)) not in got


def test_the_rejection_codes_named_in_advance_are_every_code_events_uses() -> None:
    source = inspect.getsource(events)
    literal = set(re.findall(r'_Rejected\(\s*"(\w+)"', source))
    optional = {f"invalid_{name}" for name in re.findall(r'_optional_text\(event, "(\w+)"', source)}
    assert literal
    assert optional
    assert set(REJECTION_CODES) == literal | optional
