"""Schemathesis hooks for the run in tests/system/test_openapi.py (``st run`` loads them through
SCHEMATHESIS_HOOKS): schemathesis has no serializer for NDJSON bodies of its own."""

from __future__ import annotations

import json

import schemathesis

from ranker.ingest.framing import NDJSON_TYPES


@schemathesis.serializer(*sorted(NDJSON_TYPES))
def ndjson(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """The spec describes an NDJSON body as a string: sent as it is. Negative tests also send
    other JSON values, which go as one line of JSON."""
    if isinstance(value, str):
        # Lone surrogates become invalid UTF-8, which the service must take in its stride too.
        return value.encode("utf-8", errors="surrogatepass")
    return json.dumps(value).encode()
