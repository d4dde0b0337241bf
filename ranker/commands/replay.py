"""``ranker replay FILE``: a backfill from NDJSON events (gzipped too), each with its own
``ts``, sent in chunks at a bounded rate.

Each chunk goes with an ``Idempotency-Key`` made of the file's digest, the chunk size and the
chunk's number: the same file replayed again, or resumed, sends the same chunks with the same
keys, and ranker counts each once (within its idempotency window, ``RANKER_IDEMPOTENCY_WINDOW_S``).
The digest is of the file's bytes, not its name or mtime, so a copy, a rename or a touch is
still the same file, and an edited one is another. A checkpoint file, written after each chunk
ranker took, says where to resume. A line that is not an event is reported with its number
and skipped; so is an event ranker rejects.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .client import CommandError, RankerClient
from .progress import Tally

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Line:
    """A line of the file that holds an event, and its number (from 1)."""

    number: int
    event: dict[str, Any]


def _open(path: Path) -> IO[bytes]:
    """The file's lines as bytes, gunzipped when it is gzip (by its first bytes, not its name)."""
    with path.open("rb") as probe:
        gzipped = probe.read(2) == GZIP_MAGIC
    if gzipped:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def digest_and_count(path: Path) -> tuple[str, int]:
    """The file's digest (of its bytes as stored) and how many lines it holds."""
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
    with _open(path) as lines:
        count = sum(1 for _ in lines)
    return digest.hexdigest()[:32], count


def read_events(path: Path, console: Console) -> Iterator[Line]:
    """Every line that holds an event; the others reported (with their numbers) and skipped."""
    with _open(path) as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            problem = _problem(raw)
            if isinstance(problem, str):
                console.print(f"{path}:{number}: skipped: {problem}", highlight=False)
                continue
            yield Line(number, problem)


def _problem(raw: bytes) -> dict[str, Any] | str:
    """The event a line holds, or what is wrong with it."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"not JSON ({exc})"
    if not isinstance(event, dict):
        return "not a JSON object"
    for name in ("article_id", "section"):
        if not isinstance(event.get(name), str):
            return f"no {name}"
    return event


def chunks(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    chunk: list[Line] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class Checkpoint:
    """Where a replay got to: the chunks before ``next_chunk`` of this file and chunk size
    were taken by ranker."""

    path: Path | None
    digest: str
    chunk_size: int
    next_chunk: int = 0

    @classmethod
    def load(cls, path: Path | None, digest: str, chunk_size: int) -> Checkpoint:
        """The checkpoint at ``path`` if it is this file's at this chunk size, else a new one."""
        if path is not None and path.exists():
            saved = orjson.loads(path.read_bytes())
            if saved.get("digest") == digest and saved.get("chunk_size") == chunk_size:
                return cls(path, digest, chunk_size, int(saved["next_chunk"]))
        return cls(path, digest, chunk_size)

    def advance(self) -> None:
        self.next_chunk += 1
        if self.path is not None:
            state = {"digest": self.digest, "chunk_size": self.chunk_size}
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_bytes(orjson.dumps(state | {"next_chunk": self.next_chunk}))
            temporary.replace(self.path)  # a crash leaves the old checkpoint or the new one


async def replay(
    client: RankerClient,
    path: Path,
    *,
    rate: float | None = None,
    chunk_size: int = 1000,
    checkpoint_path: Path | None = None,
    console: Console | None = None,
) -> Tally:
    """Send every event of ``path`` to ranker, at most ``rate`` events a second, resuming from
    ``checkpoint_path`` when it holds this file's checkpoint."""
    console = console or Console(stderr=True)
    # A pass over the whole file: off the loop, which the progress display runs on.
    digest, total = await asyncio.to_thread(digest_and_count, path)
    checkpoint = Checkpoint.load(checkpoint_path, digest, chunk_size)
    tally = Tally(started=time.monotonic())
    loop = asyncio.get_running_loop()
    start = loop.time()
    with _progress(console, total) as progress:
        task = progress.add_task("replay", total=total)
        for index, chunk in enumerate(chunks(read_events(path, console), chunk_size)):
            progress.update(task, completed=chunk[-1].number)
            if index < checkpoint.next_chunk:
                continue  # taken in an earlier run
            if rate:
                await asyncio.sleep(max(0.0, start + tally.sent / rate - loop.time()))
            await _send(client, chunk, f"replay-{digest}-{chunk_size}-{index}", tally, console)
            checkpoint.advance()
        progress.update(task, completed=total)
    console.print(f"replayed {path}: {tally.line(time.monotonic())}", highlight=False)
    return tally


async def _send(
    client: RankerClient, chunk: list[Line], key: str, tally: Tally, console: Console
) -> None:
    answer = await client.post_events([line.event for line in chunk], key)
    tally.sent += len(chunk)
    tally.batches += 1
    tally.accepted += answer.accepted
    tally.excluded += sum(answer.excluded.values())
    tally.rejected += len(answer.rejected)
    for rejection in answer.rejected:
        line = chunk[rejection["index"]].number
        console.print(
            f"line {line}: rejected: {rejection['code']}: {rejection['message']}", highlight=False
        )


class LinesPerSecond(ProgressColumn):
    """The replay's rate, in lines of the file a second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} lines/s")


def _progress(console: Console, total: int) -> Progress:
    """A bar with the rate and time left on a terminal; nothing on a pipe (the summary says)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        LinesPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )
