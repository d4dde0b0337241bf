"""The lock-free request histogram must expose exactly what prometheus-client's would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

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
