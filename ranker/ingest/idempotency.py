"""``Idempotency-Key`` on ingest: a batch retried with its key is counted once, answered as the
first time.

The key is never stored as sent: a digest of it (the token) names its records in Redis, so any
key a client picks makes a short, safe key name, and the increment script remembers which
tokens each ranking has counted. A digest of the body the key was first sent with is kept
before any of its views is sent to Redis, so the same key sent with another body is refused,
never counted nor answered for the first, whatever became of the first's flush. The first
answer is kept once every view is counted, compactly: a key is kept for a day, and its answer
must not cost Redis more than the batch did.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ranker.errors import IdempotencyKeyReused, InvalidIdempotencyKey, RankerError

from .parse import Rejection

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
FINGERPRINT_LENGTH = 32
"""Hex digits of a body's fingerprint."""
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII: what a header can carry safely

_NOT_REJECTED = "-"
_FIRST_MARK = 0x41  # "A": a rejection code's mark is a letter from here on, never a digit
_RUN_RE = re.compile(r"(\D)(\d*)", re.ASCII)

Reparse = Callable[[float], Awaitable[Sequence[Rejection]]]
"""The request's body parsed again as it was at a time (epoch seconds): its rejections."""


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A request's key, as the digests ranker works with."""

    token: str
    """Names the key's records: a digest of the key, 32 hex digits."""
    fingerprint: str
    """A digest of what the request sent (media type and body)."""

    def check(self, claimed: str | None) -> None:
        """Raise :class:`IdempotencyKeyReused` when the key was first sent (``claimed``, the
        fingerprint kept for it, if any) with another body."""
        if claimed is not None and claimed != self.fingerprint:
            raise key_reused()

    def record(self, answer: dict[str, Any], parsed_at: float) -> str:
        """What is kept in Redis for a retry: this request's fingerprint, then what
        :func:`kept_answer` keeps of its answer."""
        return self.fingerprint + kept_answer(answer, parsed_at)


def key_reused() -> IdempotencyKeyReused:
    """The error for a key first used with another body."""
    return IdempotencyKeyReused(
        f"this {HEADER} was first used for a different request body; send a new key for a new batch"
    )


def kept_answer(answer: dict[str, Any], parsed_at: float) -> str:
    """What is kept of the answer to a keyed batch, parsed at ``parsed_at``: its counts, and
    each rejection's code by index, as one character per event up to the last rejected one,
    run-length coded. Messages are left out (they can quote what was sent): a retry, which
    sends the same body, gets them back by parsing it again (see :func:`replayed_answer`).

    At most one byte per event however the rejections fall, where each event took at least two
    bytes of the body (a character and a separator): ``x\\n`` sent 10,000 times keeps a
    few dozen bytes.
    """
    kept: dict[str, Any] = {"accepted": answer["accepted"]}
    rejected = answer["rejected"]
    if rejected:
        codes: dict[str, str] = {}  # code -> its mark
        marks = [_NOT_REJECTED] * (rejected[-1]["index"] + 1)
        for rejection in rejected:
            code = rejection["code"]
            mark = codes.get(code)
            if mark is None:
                mark = codes[code] = chr(_FIRST_MARK + len(codes))
            marks[rejection["index"]] = mark
        runs = "".join(
            mark if count == 1 else f"{mark}{count}"
            for mark, count in ((mark, len(list(run))) for mark, run in itertools.groupby(marks))
        )
        kept["parsed_at"] = parsed_at
        kept["rejected"] = {"codes": list(codes), "events": runs}
    if "excluded" in answer:
        kept["excluded"] = answer["excluded"]
    return orjson.dumps(kept).decode()


async def replayed_answer(kept: str, reparse: Reparse) -> bytes:
    """The first answer, byte for byte, from what :func:`kept_answer` kept of it.

    Its rejections' messages come from ``reparse``, called only when there were rejections,
    with the time the body was first parsed at (so ``ts`` is judged as it was then). Should the
    body parse otherwise now (a section no longer configured, a new version's messages), a
    rejection it does not give back the same is given back with its code as its message.
    """
    record = orjson.loads(kept)
    answer: dict[str, Any] = {"accepted": record["accepted"], "rejected": []}
    if "rejected" in record:
        codes: list[str] = record["rejected"]["codes"]
        expected: list[tuple[int, str]] = []
        index = 0
        for match in _RUN_RE.finditer(record["rejected"]["events"]):
            mark, count = match.group(1), int(match.group(2) or 1)
            if mark != _NOT_REJECTED:
                code = codes[ord(mark) - _FIRST_MARK]
                expected.extend((index + n, code) for n in range(count))
            index += count
        try:
            rejected = await reparse(float(record["parsed_at"]))
            found = {r.index: (r.code, r.message) for r in rejected}
        except RankerError:
            found = {}  # the body as a whole is refused now: each code stands for its message
        rejections = answer["rejected"]
        for index, code in expected:
            again, message = found.get(index, (code, code))
            rejections.append(
                {"index": index, "code": code, "message": message if again == code else code}
            )
    if "excluded" in record:
        answer["excluded"] = record["excluded"]
    return orjson.dumps(answer)


def idempotency_key(
    raw: str | None, content_type: str, body: bytes, writer: str = ""
) -> IdempotencyKey | None:
    """The request's key, or None when it sent none. Raises :class:`InvalidIdempotencyKey`
    for a key that is empty, too long or not visible ASCII (it is not echoed).

    ``writer`` names whose keys these are (one per write token), so two senders that both
    number their batches from 1 never take each other's batches for retries."""
    if raw is None:
        return None
    if not _KEY_RE.fullmatch(raw):
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} visible ASCII characters (no spaces)"
        )
    named = hashlib.blake2b(writer.encode(), digest_size=16, person=b"ranker-key")
    named.update(b"\0")
    named.update(raw.encode())
    token = named.hexdigest()
    digest = hashlib.blake2b(content_type.encode(), digest_size=16, person=b"ranker-body")
    digest.update(b"\0")
    digest.update(body)
    return IdempotencyKey(token, digest.hexdigest())
