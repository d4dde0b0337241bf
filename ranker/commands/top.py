"""``ranker top [RANKING]``: a list as a table in the terminal, with rank movement, once or
refreshed live (``--watch``), revalidating with its ETag."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .client import RankerClient

MOVES = {
    "up": ("▲", "red"),
    "down": ("▼", "blue"),
    "same": ("-", "dim"),
    "new": ("NEW", "bold red"),
}


def list_path(ranking: str, limit: int, window: str | None) -> str:
    query = f"?limit={limit}" + (f"&window={window}" if window else "")
    return f"/v1/rankings/{ranking}{query}"


def table(answer: dict[str, Any]) -> Table:
    """A list answer as a table: rank, movement, title (its label set apart), score."""
    grid = Table(
        title=f"{answer['section']} · {answer['window']}",
        caption=f"half-life {answer['half_life_s']:g} s",
    )
    grid.add_column("#", justify="right")
    grid.add_column("move", justify="center")
    grid.add_column("title")
    grid.add_column("section")
    grid.add_column("score", justify="right")
    for item in answer["items"]:
        mark, style = MOVES.get(item["movement"], ("?", ""))
        title = Text()
        if item.get("label"):
            title.append(f"[{item['label']}] ", style="bold cyan")
        title.append(item.get("headline") or item["article_id"])
        if item["pinned"]:
            title.append(" (pinned)", style="dim")
        grid.add_row(
            str(item["rank"]),
            Text(mark, style=style),
            title,
            item.get("section") or "",
            f"{item['score']:.2f}",
        )
    return grid


async def top(
    client: RankerClient,
    ranking: str,
    *,
    limit: int = 10,
    window: str | None = None,
    watch_s: float | None = None,
    console: Console | None = None,
    rounds: int | None = None,
) -> None:
    """Print the list once, or with ``watch_s`` keep it on screen and refresh it that often
    (``rounds`` times, for tests; else until interrupted)."""
    console = console or Console()
    path = list_path(ranking, limit, window)
    _, etag, answer = await client.get_json(path)
    if watch_s is None:
        console.print(table(answer))
        return
    with Live(table(answer), console=console, auto_refresh=False) as live:
        done = 0
        while rounds is None or done < rounds:
            await asyncio.sleep(watch_s)
            status, etag, fresh = await client.get_json(path, etag)
            if status == 200:
                live.update(table(fresh), refresh=True)
            done += 1
