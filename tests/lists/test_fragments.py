"""``GET /v1/rankings/{ranking}.html``: the list as a box's HTML fragment, in the JSON's order,
escaped, from the same cache with its own validator."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from ranker.lists.fragments import render_fragment
from tests.conftest import Client, FakeClock, refreshed
from tests.support.http import get_ranking, ingest

HOSTILE = '<img src=x onerror=alert(1)> & "quotes" </li></ol><script>alert(2)</script>'


class Box(HTMLParser):
    """The parts of a fragment a page uses: each item's attributes, link and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.items: list[dict[str, str | None]] = []
        self.links: list[str | None] = []
        self.labels: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "li":
            self.items.append(attributes)
        if tag == "a":
            self.links.append(attributes.get("href"))
        self._in.append(classes[0] if classes else tag)

    def handle_endtag(self, tag: str) -> None:
        self._in.pop()

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "ranker-title":
            self.items[-1]["title_text"] = data
        if self._in and self._in[-1] == "ranker-label":
            self.labels.append(data)


def parsed(body: str) -> Box:
    box = Box()
    box.feed(body)
    box.close()
    return box


async def test_the_fragment_lists_the_json_items_in_order(client: Client) -> None:
    await ingest(
        client, *({"article_id": f"f{n}", "section": "world", "weight": 9 - n} for n in range(7))
    )
    await client.put("/v1/articles/f0", json={"title": "[PHOTOS] Seoul", "url": "/a/f0"})
    await client.put("/v1/articles/f1", json={"title": "No link here"})
    listed = await get_ranking(client, "/v1/rankings/world?limit=5")
    response = await client.get("/v1/rankings/world.html?limit=5")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    body = await response.text()
    assert "<html" not in body
    box = parsed(body)
    assert [item["data-rank"] for item in box.items] == ["1", "2", "3", "4", "5"]
    assert [item["data-article-id"] for item in box.items] == [
        item["article_id"] for item in listed["items"]
    ]
    # A title's label is a badge; the text is the headline; without a title, the article id;
    # without a URL, no link.
    assert box.labels == ["PHOTOS"]
    assert box.items[0]["title_text"] == "Seoul"
    assert box.items[1]["title_text"] == "No link here"
    assert box.items[2]["title_text"] == "f2"
    assert box.links == ["/a/f0"]
    assert "ranker-move-new" in (box.items[0]["class"] or "")


async def test_a_hostile_title_and_url_stay_text(client: Client) -> None:
    await ingest(client, {"article_id": "evil", "section": "world"})
    put = await client.put(
        "/v1/articles/evil", json={"title": HOSTILE, "url": 'https://x.example/?a=1&b="><b>'}
    )
    assert put.status == 200, await put.text()
    await refreshed(client)
    body = await (await client.get("/v1/rankings/world.html")).text()
    box = parsed(body)
    assert box.tags.count("script") == 0
    assert "img" not in box.tags
    assert "b" not in box.tags
    assert box.items[0]["title_text"] == HOSTILE
    assert box.links == ['https://x.example/?a=1&b="><b>']


def test_only_web_and_site_relative_urls_are_links() -> None:
    items = [
        {
            "rank": rank,
            "article_id": f"u{rank}",
            "title": "t",
            "label": None,
            "headline": "t",
            "url": url,
            "fill": False,
            "pinned": False,
            "movement": "same",
            "previous_rank": rank,
        }
        for rank, url in enumerate(
            ["javascript:alert(1)", "//evil.example/x", "data:text/html,x", "https://ok/", "/ok"],
            start=1,
        )
    ]
    box = parsed(render_fragment("all", "default", items).decode())
    assert box.links == ["https://ok/", "/ok"]


async def test_the_fragment_revalidates_with_its_own_etag(client: Client, clock: FakeClock) -> None:
    await ingest(client, {"article_id": "r1", "section": "world"})
    html = await client.get("/v1/rankings/world.html")
    json = await client.get("/v1/rankings/world")
    etag = html.headers["ETag"]
    assert etag.startswith('W/"')
    assert etag != json.headers["ETag"]
    assert html.headers["Cache-Control"] == json.headers["Cache-Control"]
    clock.now += 30
    await refreshed(client)
    again = await client.get("/v1/rankings/world.html", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag


@pytest.mark.parametrize("path", ["/v1/rankings/world.html?window=trending&limit=3"])
async def test_the_fragment_takes_the_lists_query(client: Client, path: str) -> None:
    await ingest(
        client, *({"article_id": f"q{n}", "section": "world", "weight": 5 - n} for n in range(5))
    )
    await refreshed(client)
    response = await client.get(path)
    box = parsed(await response.text())
    assert [item["data-article-id"] for item in box.items] == ["q0", "q1", "q2"]
    assert 'data-window="trending"' in await response.text()
    missing = await client.get("/v1/rankings/weather.html")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "unknown_section"
