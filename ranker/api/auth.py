"""Who may call what: bearer tokens (or, with none configured, loopback) for writes and
editorial changes, and each client's identity for its share of the write budget.

Routes say which kind they are (:class:`Access`, in the table in ``routes``); ``routes`` puts
the write check in front of write handlers (and hands read routes the CORS policy, ``cors``),
so no handler looks at paths or headers for either.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from ranker.errors import Forbidden, Unauthorized

# Headers a proxy adds to say whom it passes a request on for: the standard ones, and those
# nginx (`proxy_set_header X-Real-IP`), CDNs (Akamai, Cloudflare, Fastly) and load balancers are
# commonly set up to send, often alone. A loopback client that sends one is a proxy on this host
# passing on someone else's request, who is no more local than any other client.
PROXY_HEADERS = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Real-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "Client-IP",
    "Via",
)


class Access(enum.Enum):
    """Who may call a route."""

    WRITE = "write"
    """Writers only: a configured bearer token, or a loopback client when none is configured.
    No CORS: senders are servers, not browsers."""
    READ = "read"
    """Anyone, and browsers on the allowed origins (``RANKER_CORS_ORIGINS``) too."""
    OPS = "ops"
    """Anyone; for probes and scrapers, which are no browsers, so no CORS."""
    EDIT = "edit"
    """Editors only: a configured editor token (``RANKER_EDITOR_TOKENS``), or a loopback client
    when none is configured. No CORS. The handler finds who it was in ``request[ACTOR]``."""
    WRITE_OR_EDIT = "write_or_edit"
    """Writers, and editors' tokens too (``PUT /v1/articles``: its metadata is a write, its
    ``hidden`` an editorial change). The handler finds the editor in ``request[ACTOR]``, absent
    for a writer who is no editor (see :meth:`EditorGuard.writers_or_editors`). No CORS."""


ACTOR = web.RequestKey("actor", str)
"""Per editorial request: who makes it, as the audit log names them: the editor token's
name, or ``local`` for a loopback client when no editor token is configured."""
LOCAL_ACTOR = "local"


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is this host's: 127.0.0.0/8, ``::1``, or IPv4-mapped 127.x.

    None (a transport without a peer address) and anything that is no IP address are not.
    """
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class WriteGuard:
    """Decides whether a request may write.

    Tokens are kept as SHA-256 digests and a presented token is compared, in constant time,
    against every one of them: the time taken says neither which token matched, nor how long
    any of them is.
    """

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._digests = tuple(_digest(token) for token in tokens)

    def __repr__(self) -> str:
        return f"WriteGuard({len(self._digests)} tokens)"

    def check(self, request: web.BaseRequest) -> None:
        """Return if the request may write; raise :class:`Unauthorized` or :class:`Forbidden`."""
        if not self._digests:
            _check_local(request, "RANKER_WRITE_TOKENS")
            return
        if self._match(_presented_token(request, "writing needs")) is None:
            raise Unauthorized("the bearer token is not valid here")

    def writers_only(self, handler: Handler) -> Handler:
        """``handler``, run only for requests that pass :meth:`check`."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            self.check(request)
            return await handler(request)

        return guarded

    def _match(self, token: str) -> int | None:
        """The index of the token ``token`` is, compared with every one in constant time."""
        presented = _digest(token)
        found = None
        for index, digest in enumerate(self._digests):
            if hmac.compare_digest(presented, digest):
                found = index
        return found


class EditorGuard(WriteGuard):
    """Decides whether a request may make editorial changes, and who makes them: each editor
    token has a name, which the audit log records."""

    def __init__(self, editors: Mapping[str, str]) -> None:
        super().__init__(tuple(editors.values()))
        self._names = tuple(editors)

    def __repr__(self) -> str:
        return f"EditorGuard({len(self._digests)} tokens)"

    def identify(self, request: web.BaseRequest) -> str:
        """Who makes the request; raise :class:`Unauthorized` or :class:`Forbidden` if no one
        who may."""
        if not self._digests:
            _check_local(request, "RANKER_EDITOR_TOKENS")
            return LOCAL_ACTOR
        found = self._match(_presented_token(request, "editorial changes need"))
        if found is None:
            raise Unauthorized("the bearer token is not an editor token here")
        return self._names[found]

    def writers_or_editors(self, writers: WriteGuard, handler: Handler) -> Handler:
        """``handler``, run for requests that carry an editor token, or that pass the write
        check of ``writers``; ``request[ACTOR]`` names the editor, when the request is one.

        With no editor token configured, a loopback client is an editor, as on editorial routes,
        but writes only as writers do: being local lets it edit, not skip the write check."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            editor = self._editor(request)
            if editor is None or not self._digests:
                writers.check(request)
            if editor is not None:
                request[ACTOR] = editor
            return await handler(request)

        return guarded

    def _editor(self, request: web.BaseRequest) -> str | None:
        """Who the request is as an editor, or None when it is no editor (never raises)."""
        if not self._digests:
            try:
                _check_local(request, "RANKER_EDITOR_TOKENS")
            except Forbidden:
                return None
            return LOCAL_ACTOR
        token = bearer_token(request)
        found = None if token is None else self._match(token)
        return None if found is None else self._names[found]

    def editors_only(self, handler: Handler) -> Handler:
        """``handler``, run only for requests :meth:`identify` lets in, who it found in
        ``request[ACTOR]``."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            request[ACTOR] = self.identify(request)
            return await handler(request)

        return guarded


def _presented_token(request: web.BaseRequest, needs: str) -> str:
    if "Authorization" not in request.headers:
        raise Unauthorized(f"{needs} an Authorization: Bearer <token> header")
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("the Authorization header must be Bearer <token>")
    return token


def _check_local(request: web.BaseRequest, variable: str) -> None:
    if not is_loopback(request.remote):
        raise Forbidden(
            f"with no {variable} configured, only clients on the server's own host may do "
            f"this; set {variable} on the server and send Authorization: Bearer <token>"
        )
    proxied = next((name for name in PROXY_HEADERS if name in request.headers), None)
    if proxied is not None:
        raise Forbidden(
            f"this request came through a proxy (it carries {proxied}), so it is not local; "
            f"through a proxy, this needs {variable} set on the server and Authorization: "
            "Bearer <token>"
        )


def bearer_token(request: web.BaseRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == "bearer" and token else None


def client_identity(request: web.BaseRequest, *, tokens_configured: bool) -> str:
    """Whom a per-client limit counts against: with tokens configured, the token it passed the
    write check with (as a digest: the token itself is kept nowhere; however the header is
    spelled, one token is one client), else its address (any header it sends is ignored, as
    the write check ignores it)."""
    token = bearer_token(request) if tokens_configured else None
    if token is not None:
        return "token:" + _digest(token)[:8].hex()
    return f"address:{request.remote}"


def _digest(token: str) -> bytes:
    # surrogateescape: a header's undecodable bytes still hash, and simply match no token.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
