"""Editorial controls over HTTP: hiding an article, pinning one to a slot, and the audit log.

Every route here is for editors only (``auth.Access.EDIT``). A change is made in Redis, recorded
in the audit log with who made it, and shows in this replica's lists at once; other replicas
show it at their next refresh, as they do an end of a hide or pin.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from ranker.config.limits import MAX_LIMIT
from ranker.errors import (
    ArticleNotFound,
    EditorRequired,
    InvalidEditorialChange,
    NotHidden,
    PinNotFound,
    UnknownSection,
)
from ranker.ingest.admission import MAX_EDITORIAL_BODY_BYTES
from ranker.store.editorial import FOREVER, Change, Pin

from .appkeys import ADMISSION, CACHE, CLOCK, METRICS, NOTICES, SETTINGS, STORE
from .auth import ACTOR
from .preconditions import (
    check_article_id,
    declared_size,
    parse_json_object,
    read_body,
    require_redis,
)
from .responses import json_response

# The name its log lines have always carried (the module was ranker/editorial.py).
log = logging.getLogger("ranker.editorial")

MAX_EDITOR = 100
MAX_REASON = 500
DEFAULT_AUDIT_LIMIT = 50
MAX_AUDIT_LIMIT = 1000
AUDIT_FIELDS = ("action", "actor", "editor", "article_id", "ranking", "slot", "until", "reason")


async def put_hide(request: web.Request) -> web.Response:
    """Hide an article from every list, now, until ``until`` or until it is unhidden."""
    app = request.app
    article_id = check_article_id(request.match_info["article_id"])
    now = app[CLOCK]()
    body = await _read_change(request, allowed=("until", "editor", "reason"))
    until = _until(body, now)
    await _check_known(request, article_id)
    change = _change(request, body, "hide", now, article_id=article_id, until=until)
    await app[STORE].hide(article_id, until, change, now)
    await _changed(request, change)
    return json_response({"article_id": article_id, "hidden": True, "until": _json(until)})


async def delete_hide(request: web.Request) -> web.Response:
    """End an article's hide: it is listed again by its score."""
    app = request.app
    article_id = check_article_id(request.match_info["article_id"])
    now = app[CLOCK]()
    body = await _read_change(request, allowed=("editor", "reason"))
    change = _change(request, body, "unhide", now, article_id=article_id)
    if not await app[STORE].unhide(article_id, change, now):
        raise NotHidden(f"article {article_id!r} is not hidden")
    await _changed(request, change)
    return json_response({"article_id": article_id, "hidden": False})


async def put_pin(request: web.Request) -> web.Response:
    """Pin an article to a slot of a ranking's lists until ``until`` (or until unpinned)."""
    app = request.app
    ranking, slot = _pin_target(request)
    now = app[CLOCK]()
    body = await _read_change(request, allowed=("article_id", "until", "editor", "reason"))
    article_id = body.get("article_id")
    if not isinstance(article_id, str):
        raise InvalidEditorialChange("article_id is required: the article to pin")
    check_article_id(article_id)
    until = _until(body, now)
    store = app[STORE]
    if await store.get_article(article_id, now) is None:
        # A pin shows the article's title and URL: an id ranker has never heard of would
        # render as an empty slot.
        raise ArticleNotFound(f"no metadata or views for article {article_id!r}")
    change = _change(
        request, body, "pin", now, article_id=article_id, ranking=ranking, slot=slot, until=until
    )
    result = await store.pin(Pin(ranking, slot, article_id, until), change, now)
    await _changed(request, change)
    return json_response(
        {
            "ranking": ranking,
            "slot": slot,
            "article_id": article_id,
            "until": _json(until),
            "replaced": result.replaced,
            "moved_from": result.moved_from,
        }
    )


async def delete_pin(request: web.Request) -> web.Response:
    """Remove the pin at a slot: the list there is ranked by score again."""
    app = request.app
    ranking, slot = _pin_target(request)
    now = app[CLOCK]()
    body = await _read_change(request, allowed=("editor", "reason"))
    change = _change(request, body, "unpin", now, ranking=ranking, slot=slot)
    article_id = await app[STORE].unpin(ranking, slot, change, now)
    if article_id is None:
        raise PinNotFound(f"no article is pinned to slot {slot} of {ranking!r}")
    await _changed(request, replace(change, article_id=article_id))
    return json_response({"ranking": ranking, "slot": slot, "article_id": article_id})


async def get_editorial(request: web.Request) -> web.Response:
    """The hides and pins in force now."""
    app = request.app
    hides, pins = await app[STORE].active(app[CLOCK]())
    return json_response(
        {
            "hides": [{"article_id": a, "until": _json(until)} for a, until in hides],
            "pins": [
                {"ranking": p.ranking, "slot": p.slot, "article_id": p.article_id}
                | {"until": _json(p.until)}
                for p in pins
            ],
        }
    )


async def get_audit(request: web.Request) -> web.Response:
    """The audit log, newest first, a page at a time: ``?before=<next>`` gives the next."""
    limit = _audit_limit(request.query.get("limit"))
    before = request.query.get("before")
    if before is not None and not _is_entry_id(before):
        raise InvalidEditorialChange("before must be an entry id from a previous page's next")
    # One more than the page: a page that is exactly full is the last when nothing follows.
    entries = await request.app[STORE].audit_log(limit + 1, before)
    following = entries[limit - 1][0] if len(entries) > limit else None
    rendered = [_audit_entry(entry_id, fields) for entry_id, fields in entries[:limit]]
    return json_response({"entries": rendered, "next": following})


def cms_editor(request: web.Request) -> str:
    """Who sets an article's ``hidden`` through ``PUT /v1/articles``: the editor whose token it
    carried (or ``local``, a loopback client with no editor token configured). Raises
    :class:`EditorRequired` for a writer who is no editor: pulling a story, or ending an
    editor's hide of one, is an editorial change, whoever sends it."""
    editor: str | None = request.get(ACTOR)
    if editor is None:
        if request.app[SETTINGS].editor_tokens:
            raise EditorRequired(
                "hidden is an editorial change: it needs an editor token (RANKER_EDITOR_TOKENS), "
                "not a write token; leave hidden out (or null) to keep the article as it is"
            )
        raise EditorRequired(
            "hidden is an editorial change: with no RANKER_EDITOR_TOKENS configured, only "
            "clients on the server's own host may make it; leave hidden out (or null) to keep "
            "the article as it is"
        )
    return editor


async def cms_hide(
    request: web.Request, article_id: str, hidden: bool, editor: str, now: float
) -> bool:
    """Hide (until unhidden) or unhide an article for the CMS's ``hidden`` field, recorded
    under ``editor`` (see :func:`cms_editor`). Whether anything changed (unhiding an article not
    hidden changes nothing). Raises :class:`ArticleNotFound` for a hide of an article ranker
    does not know."""
    app = request.app
    action = "hide" if hidden else "unhide"
    change = Change(action, editor, now, article_id=article_id, until=FOREVER if hidden else None)
    if hidden:
        await _check_known(request, article_id)
        await app[STORE].hide(article_id, FOREVER, change, now)
    elif not await app[STORE].unhide(article_id, change, now):
        return False
    _count(request, change)
    return True


async def _check_known(request: web.Request, article_id: str) -> None:
    # A hide with no end is kept for ever, in every ranking: one of an id ranker has never
    # seen would only cost Redis, so hides are of known articles only, as pins are.
    if not await request.app[STORE].known(article_id):
        raise ArticleNotFound(f"no metadata or views for article {article_id!r}")


def _pin_target(request: web.Request) -> tuple[str, int]:
    ranking = request.match_info["section"]
    if ranking not in request.app[SETTINGS].rankings:
        raise UnknownSection(f"no ranking named {ranking[:64]!r}")
    raw = request.match_info["slot"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidEditorialChange(f"slot must be a whole number from 1 to {MAX_LIMIT}")
    return ranking, int(raw)


async def _read_change(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object (an empty body is an empty one), with only ``allowed``
    fields, ``editor`` and ``reason`` checked."""
    require_redis(request, "nothing was changed")
    app = request.app
    # A change is a small object: its own small limit, and its own budget (by editor), so
    # neither a flood of ingest nor a large body stands in an editor's way.
    limit = min(MAX_EDITORIAL_BODY_BYTES, app[SETTINGS].max_body_bytes)
    budget = app[ADMISSION].edits
    with budget.hold(request[ACTOR], declared_size(request), "nothing was changed") as hold:
        raw = await read_body(request, limit, hold)
        if not raw.strip():
            return {}
        body = parse_json_object(
            raw,
            request.content_type,
            request.charset,
            allowed,
            what="an editorial change",
            invalid=InvalidEditorialChange,
        )
    for name, most in (("editor", MAX_EDITOR), ("reason", MAX_REASON)):
        value = body.get(name)
        if value is not None and not (
            isinstance(value, str) and 0 < len(value) <= most and value.isprintable()
        ):
            raise InvalidEditorialChange(
                f"{name} must be 1-{most} printable characters (no line breaks)"
            )
    return body


def _until(body: dict[str, Any], now: float) -> float:
    until = body.get("until")
    if until is None:
        return FOREVER
    if isinstance(until, bool) or not isinstance(until, int | float) or not math.isfinite(until):
        raise InvalidEditorialChange("until must be epoch seconds, or null for no end")
    if until <= now:
        raise InvalidEditorialChange(f"until must be in the future (now is {now!r})")
    return float(until)


def _change(
    request: web.Request, body: dict[str, Any], action: str, now: float, **what: Any
) -> Change:
    return Change(
        action=action,
        actor=request[ACTOR],
        at=now,
        editor=body.get("editor"),
        reason=body.get("reason"),
        **what,
    )


def _count(request: web.Request, change: Change) -> None:
    request.app[METRICS].editorial_changes.labels(action=change.action).inc()
    # In the logs too, which outlive the audit log's bound: each part a field of its own
    # (null when it does not apply), so a log store can filter on who pulled which story.
    fields = {
        "action": change.action,
        "actor": change.actor,
        "editor": change.editor,
        "article_id": change.article_id,
        "ranking": change.ranking,
        "slot": change.slot,
        "until": None if change.until is None else _json(change.until),
        "reason": change.reason,
    }
    what = " ".join(
        f"{name}={value}"
        for name, value in fields.items()
        if value is not None and name not in ("action", "actor")
    )
    log.info("editorial change: %s by %s %s", change.action, change.actor, what, extra=fields)


async def _changed(request: web.Request, change: Change) -> None:
    """Count and log the change, and show it in the lists at once, this replica's and (by a
    change notice) the others': a pin's ranking's, every list for a hide. The change is made by
    now: a failed refresh must not report it failed (the next one picks it up)."""
    _count(request, change)
    settings = request.app[SETTINGS]
    request.app[NOTICES].publish(settings.rankings if change.ranking is None else [change.ranking])
    try:
        await request.app[CACHE].refresh(None if change.ranking is None else [change.ranking])
    except RedisError as exc:
        log.warning("lists not refreshed after an editorial change: %s", exc)


def _audit_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_AUDIT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not (
        1 <= int(raw) <= MAX_AUDIT_LIMIT
    ):
        raise InvalidEditorialChange(f"limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}")
    return int(raw)


def _is_entry_id(raw: str) -> bool:
    """Whether ``raw`` is a Redis stream entry id: two unsigned 64-bit numbers."""
    milliseconds, dash, sequence = raw.partition("-")
    return all(
        part.isascii() and part.isdigit() and len(part) <= 20 and int(part) < 2**64
        for part in (milliseconds, sequence)
    ) and bool(dash)


def _audit_entry(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": entry_id, "at": float(fields["at"])}
    for name in AUDIT_FIELDS:
        value = fields.get(name)
        if name == "slot" and value is not None:
            entry[name] = int(value)
        elif name == "until" and value is not None:
            entry[name] = _json(float(value))
        else:
            entry[name] = value
    return entry


def _json(until: float) -> float | None:
    """An ``until`` as the API gives it: epoch seconds, or null for no end."""
    return None if until == FOREVER else until
