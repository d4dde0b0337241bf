"""The store's writes: flushes, dedup marks, kept answers."""

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
from ranker.ingest.plan import (
    GONE,
    ORPHANED_AFTER_S,
    QUEUED,
    REPLAYED,
    Call,
    FlushPlan,
    increment_spec,
    ranking_call,
    sum_queued,
)
from ranker.ingest.slices import SLICE_S, run_at_once, run_in_slices

from .base import Pipe, StoreBase, observed, script_client
from .cluster import ScriptedCluster, wait_on_masters
from .keys import unsharded

__all__ = ["FLUSH_IDLE_CHECK_S", "FlushNotSent", "Writes", "increment_spec"]

FLUSH_IDLE_CHECK_S = 1.0
"""A flush after this long without a successful one first checks its connection."""


class FlushNotSent(RedisConnectionError):
    """Redis could not be reached before a flush was sent: nothing of it was applied."""


class Writes(StoreBase):
    """What the store writes."""

    @observed("flush")
    async def apply(self, plan: FlushPlan, now: float, *, queue: bool = False) -> frozenset[str]:
        """Apply a flush: one atomic script call per ranking, carrying its default profile and
        every window, all in one pipeline. Returns the tokens of the keyed batches some ranking
        had already counted (retries).

        With ``queue``, each ranking counts the flush (its tokens recorded, exactly as when
        applied) but keeps its amounts queued in Redis, for the next call that applies to that
        ranking to add with its own in one pass (:meth:`apply_queued` when none comes): Redis's
        work is per (article, profile) applied, so a busy spell's flushes cost it a fraction
        applied together. Up to 64 of a process's wait per ranking; past that its flush
        applies whatever asked. A flush that applies takes those this process queued with it.

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
        own, number = self._own_queue, self._own_queue.begin()
        try:
            while calls:
                # ranking -> the numbers of the queued flushes its call's amounts hold
                holds: dict[str, list[int]] = {}
                async with self._flush_redis.pipeline(transaction=False) as pipe:
                    for ranking, (tokens, amounts) in calls.items():
                        reference_ts, data = plan.reference_ts, amounts
                        if not queue:
                            reference_ts, data, holds[ranking] = self._with_own(
                                ranking, reference_ts, amounts
                            )
                        call = Call(reference_ts, now, mode, number, holds.get(ranking, []))
                        await self._call_increment(
                            script_client(pipe), ranking, call, increment_spec(tokens, data)
                        )
                    await self._fill_metadata(pipe, metadata)
                    metadata = {}  # set once; the calls sent again carry counts only
                    results = await self._send(pipe)
                retry: dict[str, tuple[list[str], list[dict[str, float]]]] = {}
                for ranking, (status, found) in zip(calls, results, strict=False):
                    if status == QUEUED:
                        own.queued(ranking, number, (plan.reference_ts, calls[ranking][1]))
                    elif status == GONE:
                        own.taken(ranking, found)  # applied by another call: sent without
                        retry[ranking] = calls[ranking]
                    elif status == REPLAYED:
                        skip = counted_before.setdefault(ranking, set())
                        skip.update(str(token) for token in found)
                        replayed |= skip
                        tokens, amounts = ranking_call(plan, ranking, skip, profiles)
                        # Sent again, if only (when this flush applies) to apply what is
                        # queued for the ranking, which the refused call left.
                        if tokens or any(amounts) or not queue:
                            retry[ranking] = (tokens, amounts)
                    else:
                        own.taken(ranking, holds.get(ranking, []))
                calls = retry
        finally:
            own.end(number)
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
        """Apply the flushes this process queued for ``ranking`` (see :meth:`apply`), summed
        here, and any of its own whose answer was lost, and any another process left orphaned:
        one script call for each name its scores are kept under, each in a round trip of its
        own, on the main client. Not on the flush line, and not in one pipeline: Redis runs a
        connection's pipelined commands back to back, so the flushes written meanwhile would
        wait behind every call's sums, where between round trips it runs them as they come.
        Each call is its EVALSHA alone, not a pipeline of one, which redis-py precedes with a
        SCRIPT EXISTS round trip. The main client retries a call whose connection broke; that
        is safe here, as a call that ran took the flushes it applied, and its retry finds them
        gone and is sent again without them."""
        client = cast(Redis, self._redis)  # as redis-py types a script's client
        profiles = self._settings.profiles
        for part in self.shards.parts(ranking):
            half_lives = [self._half_life(part, window) for window in profiles]
            while True:
                upto, queued = self._own_queue.answered_upto, self._own_queue.of(part)
                reference_ts, data = now, [dict[str, float]() for _ in profiles]
                if queued:
                    reference_ts, data = await run_in_slices(
                        sum_queued(queued.values(), half_lives, SLICE_S)
                    )
                call = Call(reference_ts, now, "apply", 0, list(queued), upto)
                status, gone = await self._call_increment(
                    client, part, call, increment_spec([], data)
                )
                if status != GONE:
                    self._own_queue.taken(part, queued)
                    break
                self._own_queue.taken(part, gone)

    def _with_own(
        self, ranking: str, reference_ts: float, amounts: list[dict[str, float]]
    ) -> tuple[float, list[dict[str, float]], list[int]]:
        """A flush's amounts for a ranking with those of the flushes this process queued for
        it added (rare: a flush applies when none waits), and their numbers."""
        queued = self._own_queue.of(ranking)
        if not queued:
            return reference_ts, amounts, []
        half_lives = [self._half_life(ranking, window) for window in self._settings.profiles]
        flushes = [(reference_ts, amounts), *queued.values()]
        newest, data = run_at_once(sum_queued(flushes, half_lives))
        return newest, data, list(queued)

    def _half_life(self, ranking: str, window: str | None) -> float:
        return self._settings.half_life_for(unsharded(ranking), window)

    async def _call_increment(
        self, client: Redis, ranking: str, call: Call, spec: tuple[bytes, bytes]
    ) -> Any:
        """Call ``ranking``'s increment script (see ranker/store/lua/increment.lua) on ``client``,
        or queue the call there when it is a pipeline (:func:`script_client`)."""
        settings = self._settings
        keys = [self.keys.applied(ranking)]
        for window in settings.profiles:
            keys += [self.keys.scores(ranking, window), self.keys.decay(ranking, window)]
        keys += [self.keys.queued(ranking), self.keys.pending(ranking)]
        upto = self._own_queue.answered_upto if call.answered_upto is None else call.answered_upto
        return await self._increment(
            keys=keys,
            args=[
                call.reference_ts,
                call.now,
                REBASE_AFTER_HALF_LIVES,
                settings.prune_below,
                settings.max_set_size,
                HALF_LIFE_SETTLE_S,
                settings.idempotency_window_s,
                *spec,
                *(self._half_life(ranking, window) for window in settings.profiles),
                call.mode,
                self._own_queue.owner,
                call.number,
                upto,
                msgpack.packb(call.holds),
                ORPHANED_AFTER_S,
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
