"""The flush line: the one connection a single Redis gets every flush's writes on, with the next
flush's commands written while Redis still applies the one before.

Redis runs one connection's commands in the order they arrive, so flushes sent back to back on
one connection are applied in that order, each ranking's increments included, as if each had
waited for the one before; only the wait is gone. redis-py's pipeline holds its connection from
the first command written to the last reply read, so it cannot do this: the line writes a
pipeline's commands under a lock, then reads their replies once the batches written before
have had theirs read.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


class LineBroken(RedisConnectionError):
    """The line's connection broke after a batch was written and before its replies were read:
    Redis may have applied any of it."""


class FlushLine:
    """One connection of ``client``'s pool, taken for good (and again once it breaks), on
    which batches of commands are written in turn and their replies read in the same order.

    Scripts are loaded on each connection before the first batch that calls them, in the same
    write, so a restarted Redis (which has none) never refuses part of a flush for want of one.
    """

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._connection: AbstractConnection | None = None
        self._loaded: set[str] = set()
        """The scripts loaded on this connection."""
        self._writing = asyncio.Lock()
        self._last_read: asyncio.Future[None] | None = None
        """Done once the replies of the last batch written are read (or given up)."""
        self._breaks = 0
        """How many times the connection broke: a batch written before a break has no replies
        to read."""
        self.answered_at = -math.inf
        """When Redis last answered on this connection (monotonic seconds); -inf once it broke
        or before it was made."""

    async def execute(self, pipe: Pipeline) -> list[Any]:
        """Write ``pipe``'s commands, then return their replies in order, an error reply as the
        :class:`~redis.exceptions.ResponseError` it stands for (as ``execute(raise_on_error=
        False)`` does). Raises a ``ConnectionError`` when the connection cannot be had, or broke
        (:class:`LineBroken`: Redis may have applied any of the batch)."""
        commands = list(pipe.command_stack)
        # redis-py types them as its synchronous Script; an asyncio client's are AsyncScripts.
        scripts: list[Any] = list(pipe.scripts)
        loop = asyncio.get_running_loop()
        async with self._writing:
            connection = await self._connect()
            loads = [script for script in scripts if script.sha not in self._loaded]
            wire: list[tuple[Any, ...]] = [("SCRIPT", "LOAD", script.script) for script in loads]
            wire += [args for args, _ in commands]
            before, read = self._last_read, loop.create_future()
            self._last_read = read
            breaks = self._breaks
            try:
                await connection.send_packed_command(connection.pack_commands(wire))
            except BaseException:
                read.set_result(None)
                await self._break(connection)
                raise
            self._loaded.update(script.sha for script in loads)
        try:
            if before is not None:
                await asyncio.shield(before)
            if self._breaks != breaks:
                raise LineBroken("the connection to Redis broke before this batch was answered")
            for _ in loads:
                await connection.read_response()
            replies = [await self._reply(connection, args, options) for args, options in commands]
            self.answered_at = time.monotonic()
            return replies
        except BaseException:
            # A reply not read leaves the connection out of step: no later batch may read it.
            await self._break(connection)
            raise
        finally:
            read.set_result(None)

    async def _reply(
        self, connection: AbstractConnection, args: Any, options: Mapping[str, Any]
    ) -> Any:
        try:
            # parse_response takes options away as it uses them: a copy.
            return await self._client.parse_response(
                cast(Connection, connection), args[0], **dict(options)
            )
        except ResponseError as error:
            return error

    async def _connect(self) -> AbstractConnection:
        if self._connection is None:
            pool = self._client.connection_pool
            connection: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._connection = connection
            self._loaded = set()
        return self._connection

    async def _break(self, connection: AbstractConnection) -> None:
        if self._connection is not connection:
            return  # broken already
        self._breaks += 1
        self._connection = None
        self.answered_at = -math.inf
        await connection.disconnect(nowait=True)
        await self._client.connection_pool.release(connection)
