"""Article metadata in the store: what events may set, and what an unknown article is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from ranker.api.appkeys import STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.ingest.plan import FlushPlan
from ranker.store import Ranking, RankingStore
from tests.conftest import AiohttpClient, Client, FakeClock
from tests.support.store import T0

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too


async def test_metadata_from_events_never_overwrites_the_cms(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await store.put_article("a", {"title": "From the CMS"})
    plan = FlushPlan(T0, {"sports": {"a": 1.0}}, {"a": ("From an event", "https://x.example/a")})
    await store.apply(plan, T0)
    article = await store.get_article("a", T0)
    assert article is not None
    assert (article.title, article.url) == ("From the CMS", "https://x.example/a")
    assert article.scores == {"sports": 1.0}


async def test_an_unknown_article_is_none_and_an_empty_ranking_is_empty(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    assert await store.get_article("nobody", T0) is None
    assert await store.top("sports", 10, T0) == Ranking(None, [])


TTL = Settings().event_metadata_ttl_s


async def view(client: Client, article_id: str, **fields: Any) -> None:
    event = {"article_id": article_id, "section": "sports", **fields}
    response = await client.post("/v1/events", json=[event])
    assert response.status == 200
    assert (await response.json())["accepted"] == 1


def article_key(client: Client, article_id: str) -> str:
    return client.app[STORE].keys.article(article_id)


async def test_metadata_from_events_expires_and_each_event_that_carries_it_renews_it(
    client: Client, redis: Redis
) -> None:
    await view(client, "minted-1", title="Minted", url="https://news.example/m1")
    key = article_key(client, "minted-1")
    assert await redis.hgetall(key) == {"title": "Minted", "url": "https://news.example/m1"}
    assert 0 < await redis.ttl(key) <= TTL
    # Later, with less time left: an event that carries a title renews it; the first title
    # stays (events fill in only what is unset).
    await redis.expire(key, 60)
    await view(client, "minted-1", title="Another title")
    assert await redis.ttl(key) > 60
    assert await redis.hget(key, "title") == "Minted"
    # A view without either leaves the hash as it is.
    await view(client, "minted-1")
    await view(client, "bare-id")
    assert await redis.exists(article_key(client, "bare-id")) == 0


async def test_what_the_cms_sets_is_kept_whatever_events_say(client: Client, redis: Redis) -> None:
    # Events first, then the CMS: the hash is the CMS's from then on.
    await view(client, "story-1", title="From an event")
    assert (await client.put("/v1/articles/story-1", json={"section": "sports"})).status == 200
    key = article_key(client, "story-1")
    assert await redis.ttl(key) == -1
    await view(client, "story-1", url="https://news.example/s1")
    assert await redis.ttl(key) == -1
    assert await redis.hget(key, "url") == "https://news.example/s1"
    # The CMS first, then events.
    assert (await client.put("/v1/articles/story-2", json={"title": "CMS"})).status == 200
    await view(client, "story-2", title="From an event", url="https://news.example/s2")
    key = article_key(client, "story-2")
    assert await redis.ttl(key) == -1
    assert await redis.hgetall(key) == {"title": "CMS", "url": "https://news.example/s2"}


async def test_a_hidden_article_keeps_its_metadata_so_it_can_be_unhidden(
    client: Client, redis: Redis
) -> None:
    await view(client, "pulled", title="Pulled")
    assert (await client.put("/v1/editorial/hides/pulled", json={"reason": "legal"})).status == 200
    assert await redis.ttl(article_key(client, "pulled")) == -1
    await view(client, "pulled", title="Pulled")
    assert await redis.ttl(article_key(client, "pulled")) == -1
    assert (await client.delete("/v1/editorial/hides/pulled")).status == 200


async def test_a_ttl_of_zero_keeps_metadata_from_events_for_ever(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    client = await aiohttp_client(create_app(make_settings(event_metadata_ttl_s=0), clock=clock))
    await view(client, "kept", title="Kept", url="https://news.example/k")
    key = article_key(client, "kept")
    assert await redis.hgetall(key) == {"title": "Kept", "url": "https://news.example/k"}
    assert await redis.ttl(key) == -1
