"""/healthz, /readyz and /metrics through the app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Client
from tests.support.http import assert_error, bad, get_json, mixed, post_events


async def test_health_and_readiness(client: Client) -> None:
    assert await get_json(client, "/healthz") == {"status": "ok"}
    assert await get_json(client, "/readyz") == {"status": "ready", "redis": "up"}


async def test_metrics_count_events_and_label_routes_by_template(client: Client) -> None:
    resp = await post_events(client, mixed(bad(weight=0)))
    assert resp.status == 200
    await assert_error(await post_events(client, b"nope"), 400, "invalid_json")
    await get_json(client, "/v1/rankings/sports")
    await get_json(client, "/v1/rankings/national")
    await get_json(client, "/v1/articles/good-1")
    await client.get("/nope")

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    samples = [s for f in text_string_to_metric_families(await resp.text()) for s in f.samples]

    def value(name: str, **labels: str) -> float | None:
        return next((s.value for s in samples if s.name == name and s.labels == labels), None)

    assert value("ranker_events_accepted_total", section="sports") == 1.0
    assert value("ranker_events_rejected_total", reason="invalid_weight") == 1.0
    assert value("ranker_event_batches_rejected_total", reason="invalid_json") == 1.0
    count = "ranker_http_request_duration_seconds_count"
    assert value(count, route="/v1/rankings/{section}", method="GET", status="200") == 2.0
    assert value(count, route="/v1/articles/{article_id}", method="GET", status="200") == 1.0
    assert value(count, route="/v1/events", method="POST", status="200") == 1.0
    assert value(count, route="/v1/events", method="POST", status="400") == 1.0
    routes = {s.labels["route"] for s in samples if s.name == count}
    assert routes == {
        "/v1/events",
        "/v1/rankings/{section}",
        "/v1/articles/{article_id}",
        "unmatched",
    }
