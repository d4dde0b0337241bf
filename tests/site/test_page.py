"""``GET /``: the page with the site's three boxes, rendered on the server from the lists'
fragments; ``RANKER_DEMO_PAGE`` turns it off."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from redis.asyncio import Redis

from ranker.app import create_app
from ranker.config import Settings
from ranker.site.page import PAGE_CSP
from tests.conftest import AiohttpClient, Client, FakeClock
from tests.support.http import assert_error, get_ranking
from tests.support.site import seed_front_page


class Page(HTMLParser):
    """Each box of a page (its data attributes) and the article ids it lists, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.boxes: list[dict[str, str | None]] = []
        self.listed: list[list[str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "section" and "data-ranking" in attributes:
            self.boxes.append(attributes)
            self.listed.append([])
        if tag == "li" and attributes.get("data-article-id"):
            self.listed[-1].append(attributes["data-article-id"] or "")


def parsed(body: str) -> Page:
    page = Page()
    page.feed(body)
    page.close()
    return page


async def test_the_page_shows_the_three_boxes_as_the_api_lists_them(client: Client) -> None:
    await seed_front_page(client)
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == PAGE_CSP
    body = await response.text()
    page = parsed(body)
    shape = [(box["data-ranking"], box["data-limit"]) for box in page.boxes]
    assert shape == [("all", "20"), ("all", "10"), ("entertainment", "5")]
    for box, listed in zip(page.boxes, page.listed, strict=True):
        api = await get_ranking(
            client, f"/v1/rankings/{box['data-ranking']}?limit={box['data-limit']}"
        )
        assert listed == [item["article_id"] for item in api["items"]]
    # Korean titles as sent; the hostile title is text.
    assert "김 감독 “다음 작품은 SF”" in body
    assert (
        "script" not in page.tags[page.tags.index("body") :][:-2] or page.tags.count("script") == 1
    )
    assert page.tags.count("img") == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


async def test_the_page_polls_the_fragments_the_fast_path_knows(client: Client) -> None:
    await seed_front_page(client)
    page = parsed(await (await client.get("/?window=trending&section=national")).text())
    assert [box["data-ranking"] for box in page.boxes] == ["all", "all", "national"]
    for box in page.boxes:
        source = box["data-src"]
        assert source is not None
        assert source.startswith(f"/v1/rankings/{box['data-ranking']}.html?window=trending")
        # The ETag the page was rendered with: the first poll of an unchanged list is a 304.
        poll = await client.get(source, headers={"If-None-Match": box["data-etag"] or ""})
        assert poll.status == 304


@pytest.mark.parametrize(
    ("query", "code"),
    [("section=weather", "unknown_section"), ("window=hourly", "unknown_window")],
)
async def test_an_unknown_section_or_window_is_an_error(
    client: Client, query: str, code: str
) -> None:
    response = await client.get(f"/?{query}")
    assert response.status in (400, 404)
    await assert_error(response, response.status, code)


async def test_the_page_can_be_turned_off(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    client = await aiohttp_client(create_app(make_settings(demo_page=False), clock=clock))
    await assert_error(await client.get("/"), 404, "not_found")
    # The API browser stays: it is the API's, not the demo's.
    assert (await client.get("/docs")).status == 200


async def test_the_section_box_follows_the_setting(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    client = await aiohttp_client(create_app(make_settings(page_section="sports"), clock=clock))
    page = parsed(await (await client.get("/")).text())
    assert page.boxes[2]["data-ranking"] == "sports"
