"""A TCP proxy in front of a real Redis that can lose the replies to script calls.

It makes one fault happen on cue: Redis applies a flush and the answer never arrives, so the
connection times out after the counts are made. Everything else passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib

from ranker.runtime.embedded import free_port


class ReplyLosingProxy:
    """Forwards 127.0.0.1:<port> to a Redis; while ``lose_script_replies`` is set, a connection
    that sends a script call (EVALSHA) gets no more replies."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.port = free_port()
        self.lose_script_replies = False
        self.losing_pattern = b"EVALSHA"
        """What a connection must send to lose its replies: any script call, or (say) one
        script's SHA1 only."""
        self.lost_calls = 0
        """How many times ``losing_pattern`` was sent on connections losing their replies."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cut(self) -> None:
        """Close every connection through the proxy, as a network fault or a Redis restart
        would."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        losing = asyncio.Event()
        up = asyncio.create_task(self._pipe(client_r, redis_w, losing, requests=True))
        down = asyncio.create_task(self._pipe(redis_r, client_w, losing, requests=False))
        self._tasks |= {up, down}
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for writer in (client_w, redis_w):
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        self._tasks -= {up, down}

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        losing: asyncio.Event,
        *,
        requests: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if requests and self.lose_script_replies:
                    calls = data.upper().count(self.losing_pattern.upper())
                    self.lost_calls += calls
                    if calls:
                        losing.set()
                if not requests and losing.is_set():
                    continue  # Redis answered; the answer is lost on the way
                writer.write(data)
                await writer.drain()
