"""The request boundary: what the HTTP layer refuses before a handler runs."""

from __future__ import annotations

from tests.conftest import Client


async def test_an_ignored_query_parameter_is_answered(client: Client) -> None:
    response = await client.get("/v1/rankings/all", params={"pad": "x" * 100})
    assert response.status == 200


async def test_a_request_line_past_8190_bytes_is_refused(client: Client) -> None:
    response = await client.get("/v1/rankings/all", params={"pad": "x" * 9000})
    assert response.status == 400


async def test_more_than_128_headers_are_refused(client: Client) -> None:
    headers = {f"X-Filler-{n}": "x" for n in range(200)}
    response = await client.get("/v1/rankings/all", headers=headers)
    assert response.status == 400


async def test_a_header_past_8190_bytes_is_refused(client: Client) -> None:
    response = await client.get("/v1/rankings/all", headers={"X-Big": "x" * 9000})
    assert response.status == 400
