"""The page at ``/`` in a real browser: Debian's headless Chromium, driven with selenium, against
a live server fed with events. The boxes hold the API's lists in order, a new #1 appears
without a reload, and a hostile title stays inert. A screenshot is kept in ``test-artifacts/``.

Skipped, with the reason, where Chromium or its driver is not installed (``.ci/run`` installs
both: ``apt-get install chromium chromium-driver``); nothing is downloaded at run time.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service

from tests.conftest import Client
from tests.support.http import get_ranking, ingest
from tests.support.site import HOSTILE, seed_front_page

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium and its driver are not installed (apt-get install chromium chromium-driver)",
)

T = TypeVar("T")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    assert CHROMIUM is not None
    assert CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Without the background-networking flags Chromium calls out to Google, which this
    # machine's closed network refuses.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1500",
        "--lang=ko-KR",
    ):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


async def in_browser(call: Callable[..., T], *args: Any) -> T:
    """A blocking webdriver call off the event loop, which serves the page meanwhile."""
    return await asyncio.to_thread(call, *args)


BOXES_JS = """
return Array.from(document.querySelectorAll('.box[data-ranking]')).map(box => ({
  ranking: box.dataset.ranking,
  limit: box.dataset.limit,
  ids: Array.from(box.querySelectorAll('li[data-article-id]')).map(li => li.dataset.articleId),
}));
"""


async def boxes(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await in_browser(driver.execute_script, BOXES_JS)
    return found


async def wait_for(check: Callable[[], Any], what: str, deadline_s: float = 30.0) -> None:
    """Poll a condition the page's script makes true; a generous deadline for busy machines."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    while not await check():
        if loop.time() > until:
            raise AssertionError(f"not within {deadline_s} s: {what}")
        await asyncio.sleep(0.2)


async def test_the_boxes_are_the_api_lists_and_follow_them_live(
    client: Client, browser: webdriver.Chrome
) -> None:
    await seed_front_page(client)
    page = str(client.make_url("/"))
    await in_browser(browser.get, page)
    await in_browser(browser.execute_script, "window.loadedOnce = true;")

    # Each box holds exactly the API's list, in order.
    shown = await boxes(browser)
    assert [(box["ranking"], box["limit"]) for box in shown] == [
        ("all", "20"),
        ("all", "10"),
        ("entertainment", "5"),
    ]
    for box in shown:
        api = await get_ranking(client, f"/v1/rankings/{box['ranking']}?limit={box['limit']}")
        assert box["ids"] == [item["article_id"] for item in api["items"]]

    # The hostile title is text: no alert, no image, nothing ran.
    title_text = await in_browser(
        browser.execute_script,
        "return document.querySelector('li[data-article-id=\"e5\"] .ranker-title').textContent",
    )
    assert title_text == HOSTILE
    assert await in_browser(browser.execute_script, "return document.images.length") == 0
    assert await in_browser(lambda: browser.title) != "pwned"
    with pytest.raises(NoAlertPresentException):
        await in_browser(lambda: browser.switch_to.alert.text)

    # A new #1, posted while the page is open, appears without a reload.
    await ingest(client, {"article_id": "breaking", "section": "entertainment", "weight": 500})
    put = await client.put("/v1/articles/breaking", json={"title": "[속보] 새 1위 기사"})
    assert put.status == 200

    async def breaking_on_top() -> bool:
        return all(box["ids"][:1] == ["breaking"] for box in await boxes(browser))

    await wait_for(breaking_on_top, "the new #1 at the top of every box")
    assert await in_browser(browser.execute_script, "return window.loadedOnce === true")
    shown = await boxes(browser)
    for box in shown:
        api = await get_ranking(client, f"/v1/rankings/{box['ranking']}?limit={box['limit']}")
        assert box["ids"] == [item["article_id"] for item in api["items"]]

    ARTIFACTS.mkdir(exist_ok=True)
    await asyncio.sleep(3)  # past the moved items' highlight, for a screenshot of the page
    assert await in_browser(browser.save_screenshot, str(ARTIFACTS / "page.png"))


async def test_the_api_browser_shows_the_openapi_document(
    client: Client, browser: webdriver.Chrome
) -> None:
    await in_browser(browser.get, str(client.make_url("/docs")))

    async def rendered() -> bool:
        operations: int = await in_browser(
            browser.execute_script, "return document.querySelectorAll('.opblock').length"
        )
        return operations > 0

    await wait_for(rendered, "Swagger UI showing the document's operations")
    title = await in_browser(
        browser.execute_script,
        "return document.querySelector('.swagger-ui .info .title').textContent",
    )
    assert title.startswith("ranker")
    # Nothing the page needed was refused (its CSP) or missing.
    errors = [
        entry
        for entry in await in_browser(browser.get_log, "browser")
        if entry["level"] == "SEVERE"
    ]
    assert errors == []
