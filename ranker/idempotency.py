"""``Idempotency-Key`` on ingest: a batch retried with its key is counted once, answered as the
first time.

The key is never stored as sent: a digest of it (the token) names its records in Redis, so any
key a client picks makes a short, safe key name, and the increment script remembers which
tokens each ranking has counted. The first answer is kept with a digest of the body, so the
same key sent with another body is refused rather than silently answered for the first.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import IdempotencyKeyReused, InvalidIdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
MAX_KEPT_ANSWER_BYTES = 16 * 1024
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII: what a header can carry safely


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A request's key, as the digests ranker works with."""

    token: str
    """Names the key's records: a digest of the key, 32 hex digits."""
    fingerprint: str
    """A digest of what the request sent (media type and body)."""

    def record(self, answer: dict[str, Any]) -> str:
        """The record kept for a retry: this request's fingerprint and its answer.

        An answer over ``MAX_KEPT_ANSWER_BYTES`` (thousands of rejected events) is kept as the
        indexes of its rejections by code, and given back with each code as its message: a
        key is kept for a day, and its answer must not cost Redis more than the batch did.
        """
        record = orjson.dumps({"fingerprint": self.fingerprint, "answer": answer})
        if len(record) > MAX_KEPT_ANSWER_BYTES:
            by_code: dict[str, list[int]] = {}
            for rejection in answer["rejected"]:
                by_code.setdefault(rejection["code"], []).append(rejection["index"])
            compact = {"accepted": answer["accepted"], "rejected_by_code": by_code}
            if "excluded" in answer:
                compact["excluded"] = answer["excluded"]
            record = orjson.dumps({"fingerprint": self.fingerprint, "compact": compact})
        return record.decode()

    def replay(self, record: str) -> bytes:
        """The first answer, from its record, for a retry of the same request.

        Raises :class:`IdempotencyKeyReused` when the key was first sent with another body.
        """
        kept = orjson.loads(record)
        if kept["fingerprint"] != self.fingerprint:
            raise IdempotencyKeyReused(
                f"this {HEADER} was first used for a different request body; send a new key "
                "for a new batch"
            )
        if "answer" in kept:
            return orjson.dumps(kept["answer"])
        compact = kept["compact"]
        rejected = sorted(
            (index, code)
            for code, indexes in compact["rejected_by_code"].items()
            for index in indexes
        )
        answer = {
            "accepted": compact["accepted"],
            "rejected": [
                {"index": index, "code": code, "message": code} for index, code in rejected
            ],
        }
        if "excluded" in compact:
            answer["excluded"] = compact["excluded"]
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
