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
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII: what a header can carry safely


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A request's key, as the digests ranker works with."""

    token: str
    """Names the key's records: a digest of the key, 32 hex digits."""
    fingerprint: str
    """A digest of what the request sent (media type and body)."""

    def record(self, answer: Any) -> str:
        """The record kept for a retry: this request's fingerprint and its answer."""
        return orjson.dumps({"fingerprint": self.fingerprint, "answer": answer}).decode()

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
        return orjson.dumps(kept["answer"])


def idempotency_key(raw: str | None, content_type: str, body: bytes) -> IdempotencyKey | None:
    """The request's key, or None when it sent none. Raises :class:`InvalidIdempotencyKey`
    for a key that is empty, too long or not visible ASCII (it is not echoed)."""
    if raw is None:
        return None
    if not _KEY_RE.fullmatch(raw):
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} visible ASCII characters (no spaces)"
        )
    token = hashlib.blake2b(raw.encode(), digest_size=16, person=b"ranker-key").hexdigest()
    digest = hashlib.blake2b(content_type.encode(), digest_size=16, person=b"ranker-body")
    digest.update(b"\0")
    digest.update(body)
    return IdempotencyKey(token, digest.hexdigest())
