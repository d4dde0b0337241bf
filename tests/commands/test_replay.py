"""``ranker replay``: a backfill counted once however often it runs, bad lines skipped."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from ranker.commands.client import CommandError, RankerClient
from ranker.commands.replay import replay


def write_events(path: Path, lines: list[bytes]) -> None:
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def events(count: int, article: str = "r") -> list[bytes]:
    now = time.time()
    return [
        orjson.dumps({"article_id": f"{article}{n % 3}", "section": "sports", "ts": now - n})
        for n in range(count)
    ]


async def score(client: RankerClient, article_id: str) -> float:
    _, _, article = await client.get_json(f"/v1/articles/{article_id}")
    return float(article["scores"]["sports"])


def console() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=200)


@pytest.mark.parametrize("name", ["views.ndjson", "views.ndjson.gz"])
async def test_a_replay_run_twice_counts_once(
    client: RankerClient, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    write_events(path, events(30))
    first = await replay(client, path, chunk_size=7, console=console())
    assert (first.sent, first.accepted, first.batches) == (30, 30, 5)
    counted = await score(client, "r0")
    again = await replay(client, path, chunk_size=7, console=console())
    assert again.sent == 30
    # The same keys: nothing counted twice (the score only decays a little meanwhile).
    assert await score(client, "r0") == pytest.approx(counted, rel=1e-3)


async def test_a_resumed_replay_sends_only_what_is_left(
    client: RankerClient, tmp_path: Path
) -> None:
    path = tmp_path / "views.ndjson"
    write_events(path, events(20))
    checkpoint = tmp_path / "progress.json"
    await replay(client, path, chunk_size=5, checkpoint_path=checkpoint, console=console())
    assert orjson.loads(checkpoint.read_bytes())["next_chunk"] == 4
    resumed = await replay(
        client, path, chunk_size=5, checkpoint_path=checkpoint, console=console()
    )
    assert resumed.sent == 0
    # Another file (or chunk size) does not take this checkpoint.
    other = tmp_path / "other.ndjson"
    write_events(other, events(4, article="o"))
    fresh = await replay(client, other, chunk_size=5, checkpoint_path=checkpoint, console=console())
    assert fresh.sent == 4


async def test_bad_lines_are_reported_with_their_numbers_and_skipped(
    client: RankerClient, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.ndjson"
    good = events(3)
    write_events(
        path,
        [
            good[0],
            b"{not json",
            b"[1, 2]",
            b"",
            orjson.dumps({"section": "sports"}),
            good[1],
            orjson.dumps({"article_id": "x", "section": "weather"}),
            good[2],
        ],
    )
    out = console()
    tally = await replay(client, path, console=out)
    report = out.file.getvalue()  # type: ignore[attr-defined]
    assert f"{path}:2: skipped: not JSON" in report
    assert f"{path}:3: skipped: not a JSON object" in report
    assert f"{path}:5: skipped: no article_id" in report
    assert "line 7: rejected: unknown_section" in report
    assert (tally.sent, tally.accepted, tally.rejected) == (4, 3, 1)


async def test_a_missing_file_is_a_command_error(client: RankerClient, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file"):
        await replay(client, tmp_path / "nope.ndjson", console=console())
