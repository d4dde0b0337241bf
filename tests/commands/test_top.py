"""``ranker top``: a list as a table, with movement, labels and titles."""

from __future__ import annotations

import io

from rich.console import Console

from ranker.commands.client import RankerClient
from ranker.commands.top import top


async def test_top_shows_the_list_as_a_table(client: RankerClient) -> None:
    await client.post_events(
        [
            {"article_id": "t1", "section": "sports", "weight": 3},
            {"article_id": "t2", "section": "sports"},
        ]
    )
    await client.put_article("t1", {"title": "[LIVE] 대표팀 승리"})
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    for _ in range(50):  # the early refresh after those writes
        out.truncate(0)
        await top(client, "sports", limit=5, console=console)
        if "대표팀" in out.getvalue():
            break
    text = out.getvalue()
    assert "sports · default" in text
    assert "[LIVE] 대표팀 승리" in text
    assert text.index("대표팀") < text.index("t2")
    assert "NEW" in text


async def test_watch_revalidates_and_redraws(client: RankerClient) -> None:
    await client.post_events([{"article_id": "w1", "section": "world"}])
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False)
    await top(client, "world", watch_s=0.05, rounds=3, console=console)
    assert "world · default" in out.getvalue()
