"""What the page's tests show: a front page's worth of views and titles."""

from __future__ import annotations

from tests.conftest import Client, refreshed
from tests.support.http import ingest

HOSTILE = "<img src=x onerror=\"document.title='pwned'\"><script>alert(1)</script>"
"""A title that would run script if it were ever markup."""

TITLES = {
    "e6": "[INTERVIEW] 김 감독 “다음 작품은 SF”",
    "e5": HOSTILE,
    "e4": "[PHOTOS] 레드카펫 위의 스타들",
    "n08": "서울 첫눈, 출근길 교통 혼잡",
    "n17": "[LIVE] Parliament votes on the budget",
}


async def seed_front_page(client: Client) -> None:
    """25 national articles and 7 entertainment ones (those on top site-wide), some titled,
    one hostile, the lists refreshed."""
    await ingest(
        client,
        *(
            {"article_id": f"n{n:02}", "section": "national", "weight": 1 + n % 9}
            for n in range(25)
        ),
        *({"article_id": f"e{n}", "section": "entertainment", "weight": 20 + n} for n in range(7)),
    )
    for article_id, title in TITLES.items():
        url = f"https://news.example/{article_id}"
        put = await client.put(f"/v1/articles/{article_id}", json={"title": title, "url": url})
        assert put.status == 200
    await refreshed(client)
