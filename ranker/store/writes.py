"""The store's writes: flushes, dedup marks, kept answers; and the checks of the server itself
(PING, whether it takes writes, its version and eviction policy)."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal, cast

import msgpack
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ranker.decay import HALF_LIFE_SETTLE_S, REBASE_AFTER_HALF_LIVES
from ranker.errors import ReplicationUnconfirmed
from ranker.ingest.idempotency import FINGERPRINT_LENGTH
from ranker.ingest.plan import FlushPlan, ranking_call

from .base import Pipe, StoreBase, observed, script_client
from .cluster import ScriptedCluster, wait_on_masters
from .keys import unsharded

__all__ = ["FLUSH_IDLE_CHECK_S", "FlushNotSent", "Writes"]

FLUSH_IDLE_CHECK_S = 1.0
"""A flush after this long without a successful one first checks its connection."""


def increment_spec(tokens: list[str], amounts: list[dict[str, float]]) -> tuple[bytes, bytes]:
    """The increment script's two data arguments (see ranker/store/lua/increment.lua), each
    MessagePack: the tokens, and ``[article ids, amounts of profile 1, amounts of profile 2,
    ...]``, each profile's amounts in the order of the ids (``False`` where a profile has none
    for an article). Apart, so a flush the script queues is kept as sent, without its tokens.

    MessagePack carries each amount as the 8 bytes of its double, which the script's
    ``cmsgpack`` reads back as the same double: no text to format here and parse in Redis, as
    JSON took (Redis's CPU per view, the bound of ingest). The ids go once, not once per
    profile: every profile of a ranking counts the same views, so the same articles."""
    ids = list(amounts[0]) if amounts else []
    if all(list(profile) == ids for profile in amounts[1:]):
        columns = [list(profile.values()) for profile in amounts]
    else:
        ids = list(dict.fromkeys(article for profile in amounts for article in profile))
        columns = [[profile.get(article, False) for article in ids] for profile in amounts]
    packed_tokens: bytes = msgpack.packb(tokens)
    data: bytes = msgpack.packb([ids, *columns])
    return packed_tokens, data


class FlushNotSent(RedisConnectionError):
    """Redis could not be reached before a flush was sent: nothing of it was applied."""


class Writes(StoreBase):
    """What the store writes, and its checks of the server."""

    @observed("ping")
    async def ping(self) -> None:
        await self._redis.ping()

    @observed("write_check")
    async def check_writes(self) -> None:
        """Write a small key of ranker's own and delete it, in one transaction (so no one ever
        sees it): Redis refuses the write (and so turns ``writable`` False) when it refuses
        every write, and taking it turns ``writable`` True again."""
        key = self.keys.write_check()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, "1")
            pipe.delete(key)
            await pipe.execute()
        self.writes_taken()

    @observed("server_info")
    async def server_version(self) -> str:
        """The Redis (or Valkey) server's version."""
        info = await self._redis.info("server")
        return str(info.get("valkey_version") or info.get("redis_version") or "unknown")

    @observed("server_info")
    async def eviction_policy(self) -> str:
        """The server's ``maxmemory-policy``: under any but ``noeviction``, Redis may drop the
        keys that remember counted batches, and a retry would count again."""
        info = await self._redis.info("memory")
        return str(info.get("maxmemory_policy", "unknown"))

    @observed("flush")
    async def apply(self, plan: FlushPlan, now: float, *, queue: bool = False) -> frozenset[str]:
        """Apply a flush: one atomic script call per ranking, carrying its default profile and
        every window, all in one pipeline. Returns the tokens of the keyed batches some ranking
        had already counted (retries).

        With ``queue``, each ranking counts the flush (its tokens recorded, exactly as when
        applied) but keeps its amounts queued in Redis, for the next call that applies to that
        ranking to add with its own in one pass (:meth:`apply_queued` when none comes): Redis's
        work is per (article, profile) applied, so a busy spell's flushes cost it a fraction
        applied together. Up to 256 wait per ranking; past that a flush applies whatever asked.

        A ranking whose call finds such a batch applies nothing, and is sent again in another
        pipeline without that batch's share (rare: it takes a retry). A pipeline is never
        sent twice (Redis may have applied it before a connection broke). So after an idle
        spell or a failure, when Redis may have closed the connection (restart, idle timeout),
        it is proven first: a PING that finds it closed drops it, and a second PING opens the
        connection the pipeline then uses. Under load there is no PING.
        """
        await self._prove_flush_connection()
        # The site-wide amounts, when it is sharded, as each sub-ranking's: a ranking of its
        # own to the script (see ranker/store/shards.py).
        plan = self.shards.split(plan)
        # Each ranking's script call, as the keyed batches it carries and its merged amounts
        # per profile. A call that finds some of its batches counted already applies nothing
        # and is sent again without them, until none is left over.
        profiles = self._settings.profiles
        calls = {
            ranking: ranking_call(plan, ranking, set(), profiles) for ranking in plan.rankings()
        }
        # A token given twice is counted once: its second batch is a retry of the first.
        uses = Counter(batch.token for batch in plan.keyed)
        replayed = {token for token, used in uses.items() if used > 1}
        counted_before: dict[str, set[str]] = {}  # ranking -> the tokens it had counted
        metadata = plan.metadata
        mode: Literal["apply", "queue"] = "queue" if queue else "apply"
        while calls:
            async with self._flush_redis.pipeline(transaction=False) as pipe:
                for ranking, (tokens, amounts) in calls.items():
                    spec = increment_spec(tokens, amounts)
                    await self._call_increment(
                        script_client(pipe), ranking, plan.reference_ts, now, spec, mode
                    )
                await self._fill_metadata(pipe, metadata)
                metadata = {}  # set once; the calls sent again carry counts only
                results = await self._send(pipe)
            retry: dict[str, tuple[list[str], list[dict[str, float]]]] = {}
            for ranking, (members, found) in zip(calls, results, strict=False):
                if members == -1:
                    skip = counted_before.setdefault(ranking, set())
                    skip.update(str(token) for token in found)
                    replayed |= skip
                    tokens, amounts = ranking_call(plan, ranking, skip, profiles)
                    # Sent again, if only (when this flush applies) to apply what is queued
                    # for the ranking, which the refused call left.
                    if tokens or any(amounts) or not queue:
                        retry[ranking] = (tokens, amounts)
            calls = retry
        self._flush_proven_at = time.monotonic()
        await self._wait_for_replicas(plan)
        if plan.keyed:
            # Only now, with every count applied: a kept answer promises a retry that much.
            async with self._flush_redis.pipeline(transaction=False) as pipe:
                for batch in plan.keyed:
                    await self._keep(pipe, batch.token, batch.record)
                await self._send(pipe)
        return frozenset(replayed)

    @observed("flush")
    async def apply_queued(self, ranking: str, now: float) -> None:
        """Apply whatever flushes are queued for ``ranking`` (see :meth:`apply`): one script
        call for each name its scores are kept under, each in a round trip of its own, on the
        main client. Not on the flush line, and not in one pipeline: Redis runs a connection's
        pipelined commands back to back, so the flushes written meanwhile would wait behind
        every call's sums (tens of milliseconds for a busy spell's), where between round trips
        it runs them as they come. Each call is its EVALSHA alone, not a pipeline of one, which
        redis-py precedes with a SCRIPT EXISTS round trip. The main client retries a call whose
        connection broke; that is safe here, as a call that ran took the queue it applied, and
        its retry finds nothing left to apply."""
        nothing = increment_spec([], [{} for _ in self._settings.profiles])
        client = cast(Redis, self._redis)  # as redis-py types a script's client
        for part in self.shards.parts(ranking):
            await self._call_increment(client, part, now, now, nothing, "apply")

    async def _call_increment(
        self,
        client: Redis,
        ranking: str,
        reference_ts: float,
        now: float,
        spec: tuple[bytes, bytes],
        mode: Literal["apply", "queue"],
    ) -> None:
        """Call ``ranking``'s increment script (see ranker/store/lua/increment.lua) on ``client``,
        or queue the call there when it is a pipeline (:func:`script_client`)."""
        settings = self._settings
        keys = [self.keys.applied(ranking)]
        half_lives = []
        for window in settings.profiles:
            keys += [self.keys.scores(ranking, window), self.keys.decay(ranking, window)]
            half_lives.append(settings.half_life_for(unsharded(ranking), window))
        keys.append(self.keys.queued(ranking))
        await self._increment(
            keys=keys,
            args=[
                reference_ts,
                now,
                REBASE_AFTER_HALF_LIVES,
                settings.prune_below,
                settings.max_set_size,
                HALF_LIFE_SETTLE_S,
                settings.idempotency_window_s,
                *spec,
                *half_lives,
                mode,
            ],
            client=client,
        )

    async def _wait_for_replicas(self, plan: FlushPlan) -> None:
        """With ``redis_wait_replicas``, wait until the flush's writes reached that many
        replicas (``WAIT`` on the flush's own connection, which counts every write sent on it
        so far), else raise :class:`~ranker.errors.ReplicationUnconfirmed`. Before a keyed
        batch's answer is kept: a retry of an unconfirmed one finds its views counted, waits
        again, and is answered once they are confirmed.

        On a cluster, ``WAIT`` goes to every master the flush wrote to, each over the flush
        client's one connection to it (``max_connections=1`` per node): the connection its
        writes went over, as ``WAIT`` counts the writes of one connection to one master."""
        wanted = self._settings.redis_wait_replicas
        if not wanted:
            return
        timeout_ms = self._settings.redis_wait_timeout_ms
        client = self._flush_redis
        if isinstance(client, ScriptedCluster):
            reached = await wait_on_masters(client, self._written_keys(plan), wanted, timeout_ms)
        else:
            async with client.pipeline(transaction=False) as pipe:
                # On the line: the connection every write of this flush went over.
                pipe.execute_command("WAIT", wanted, timeout_ms)
                (reached,) = await self._send(pipe)
        if reached < wanted:
            self.metrics.redis_errors.labels(operation="replication").inc()
            raise ReplicationUnconfirmed(
                f"the batch was counted, but reached {reached} of the {wanted} Redis replicas "
                f"asked for (RANKER_REDIS_WAIT_REPLICAS) within {timeout_ms} ms: retry with "
                "the same Idempotency-Key to have it confirmed, and counted once"
            )

    def _written_keys(self, plan: FlushPlan) -> list[str]:
        """A key in each slot the flush wrote to: each ranking's (its script call's keys share
        one slot), the articles' metadata, and the keyed batches' idempotency records
        (:meth:`claim_keys`)."""
        keys = self.keys
        return [
            *(keys.applied(ranking) for ranking in plan.rankings()),
            *(keys.article(article_id) for article_id in plan.metadata),
            *(keys.idempotency(batch.token) for batch in plan.keyed),
        ]

    async def _prove_flush_connection(self) -> None:
        """After an idle spell or a failure, PING the flush connection (twice: the first finds
        a connection Redis closed and drops it); then count it unproven until the caller's
        work succeeds. Raises :class:`FlushNotSent`."""
        if self._line is not None:
            # The line knows when Redis last answered on it, whatever flush that was for: a
            # flush in flight does not make the next one PING (which would wait its turn
            # behind it, and so end the overlap).
            proven_at = self._line.answered_at
        else:
            proven_at, self._flush_proven_at = self._flush_proven_at, -math.inf
        if time.monotonic() - proven_at > FLUSH_IDLE_CHECK_S:
            try:
                try:
                    await self._ping_flush_connection()
                except RedisConnectionError:
                    await self._ping_flush_connection()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise FlushNotSent(f"the flush was not sent: {exc}") from exc

    async def _ping_flush_connection(self) -> None:
        if self._line is None:
            await self._flush_redis.ping()
            return
        async with self._flush_redis.pipeline(transaction=False) as pipe:
            pipe.ping()
            await self._send(pipe)

    async def _send(self, pipe: Pipe) -> list[Any]:
        """Run a pipeline of flush work: on the flush line, or (on a cluster) as it is. Raises
        the first error reply, as ``execute`` does."""
        if self._line is None:
            results: list[Any] = await pipe.execute()
            return results
        assert isinstance(pipe, Pipeline)
        replies = await self._line.execute(pipe)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    @observed("idempotency_set")
    async def claim_keys(self, bodies: Mapping[str, str]) -> dict[str, str]:
        """Before a flush sends keyed batches' views: keep, for each token not kept yet, the
        fingerprint of the body it comes with (``bodies``, token -> fingerprint), for the
        idempotency window. Returns, for each token, the fingerprint kept for it: this one, or
        the one it was first sent with, whose views this flush must then not count.

        Kept before the counts, and for the whole key (not per ranking): a body whose flush
        failed after Redis applied it in some rankings still holds its key, so another body
        can neither be counted in the others, nor be taken for its retry."""
        window = self._settings.idempotency_window_s
        # On a cluster, over the flush connections: the ones WAIT asks about. On the flush
        # line the answer would wait for the flushes in flight: the counts are sent only once
        # these are kept all the same, and a WAIT on the line covers them (a replica takes one
        # stream, in order).
        client = self._flush_redis if self._line is None else self._redis
        if self._line is None:
            await self._prove_flush_connection()
        async with client.pipeline(transaction=False) as pipe:
            for token, fingerprint in bodies.items():
                pipe.set(self.keys.idempotency(token), fingerprint, ex=window, nx=True, get=True)
            results = await pipe.execute()
        if self._line is None:
            self._flush_proven_at = time.monotonic()
        return {
            token: fingerprint if kept is None else str(kept)[:FINGERPRINT_LENGTH]
            for (token, fingerprint), kept in zip(bodies.items(), results, strict=True)
        }

    async def _fill_metadata(
        self, pipe: Pipe, metadata: Mapping[str, tuple[str | None, str | None]]
    ) -> None:
        """Queue the titles and urls events carried, each set only where unset. What events
        alone made expires ``RANKER_EVENT_METADATA_TTL_S`` after the last event that carried
        it, so ids no ranking holds any more (a pipeline that mints them) do not pile up."""
        ttl = self._settings.event_metadata_ttl_s
        for article_id, (title, url) in metadata.items():
            key = self.keys.article(article_id)
            if not ttl:  # kept for ever
                if title is not None:
                    pipe.hsetnx(key, "title", title)
                if url is not None:
                    pipe.hsetnx(key, "url", url)
                continue
            fields: list[str | int] = [ttl]
            if title is not None:
                fields += ["title", title]
            if url is not None:
                fields += ["url", url]
            await self._event_metadata(keys=[key], args=fields, client=script_client(pipe))

    @observed("dedup")
    async def claim_views(self, marks: Mapping[int, list[str]], token: str) -> set[str]:
        """Mark (visitor, article) pairs seen for the dedup window, as ``token``'s batch: one
        script call per shard, all in one pipeline. ``marks`` are the pairs' digests by shard.
        Returns those whose views count: new, or marked by this same token before."""
        window = self._settings.dedup_window_s
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, digests in marks.items():
                keys = [self.keys.seen(shard, digest) for digest in digests]
                await self._seen(keys=keys, args=[token, window], client=script_client(pipe))
            results = await pipe.execute()
        return {
            digest
            for digests, counts in zip(marks.values(), results, strict=True)
            for digest, counts_now in zip(digests, counts, strict=True)
            if counts_now
        }

    @observed("idempotency_set")
    async def keep_answer(self, token: str, record: str) -> bool:
        """Keep the answer to a keyed batch that had nothing to count, its body's fingerprint
        kept already (:meth:`claim_keys`); ``record`` as ``IdempotencyKey.record`` makes it.
        False when an answer was kept for its key already (that one stays)."""
        async with self._flush_redis.pipeline(transaction=False) as pipe:
            await self._keep(pipe, token, record)
            (kept,) = await self._send(pipe)
        return bool(kept)

    async def _keep(self, pipe: Pipe, token: str, record: str) -> None:
        # A record is the body's fingerprint, then the answer (IdempotencyKey.record).
        await self._keep_answer(
            keys=[self.keys.idempotency(token)],
            args=[
                record[:FINGERPRINT_LENGTH],
                record[FINGERPRINT_LENGTH:],
                self._settings.idempotency_window_s,
            ],
            client=script_client(pipe),
        )

    @observed("idempotency_get")
    async def idempotency_record(self, token: str) -> tuple[str | None, str | None]:
        """What is kept for a keyed batch within the window: the fingerprint of the body its
        key was first sent with, and the answer to it, once its views were all counted."""
        kept = await self._redis.get(self.keys.idempotency(token))
        if kept is None:
            return None, None
        kept = str(kept)
        return kept[:FINGERPRINT_LENGTH], kept[FINGERPRINT_LENGTH:] or None
