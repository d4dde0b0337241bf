"""The checks on settings' values: each raises :class:`~ranker.config.ConfigError` naming the
variable a bad value came from, as the field's declaration names it.
:class:`~ranker.config.Settings` runs them all when it is made."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from .limits import (
    ANY_ORIGIN,
    DEFAULT_WINDOW,
    EDITOR_NAME_RE,
    KEY_PREFIX_RE,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_DEDUP_WINDOW_S,
    MAX_EVENT_METADATA_TTL_S,
    MAX_MOVEMENT_INTERVAL_S,
    MAX_WINDOWS,
    MAX_WORKERS,
    MIN_EVENT_METADATA_TTL_S,
    MIN_HALF_LIFE_S,
    MIN_MOVEMENT_INTERVAL_S,
    MIN_PRUNE_BELOW,
    ORIGIN_RE,
    SETTING,
    SITE_WIDE,
    SLUG_RE,
    TOKEN_RE,
    ConfigError,
    Setting,
)

if TYPE_CHECKING:
    from .settings import Settings


def check_settings(settings: Settings) -> None:
    """Raise :class:`~ranker.config.ConfigError` for the first value out of bounds."""
    var = variables(type(settings))
    check_sections(settings.sections, var["sections"])
    _check_redis(settings, var)
    _check_windows(settings, var)
    _check_per_ranking(
        settings, settings.section_half_lives, var["section_half_lives"], _check_half_life
    )
    _check_per_ranking(settings, settings.max_age_hours, var["max_age_hours"], _check_positive)
    _check_half_life(settings.half_life_s, var["half_life_s"])
    _check_positive(settings.redis_timeout_s, var["redis_timeout_s"])
    _check_ranges(settings)
    _check_lists(settings, var)
    _check_ingest_limits(settings, var)
    _check_tokens(settings.write_tokens, var["write_tokens"])
    _check_editors(settings, var)
    _check_origins(settings.cors_origins, var["cors_origins"])
    if settings.page_section is not None and settings.page_section not in settings.rankings:
        raise ConfigError(
            f"{var['page_section']}: {settings.page_section[:64]!r} is not a ranking; the "
            f"rankings are {', '.join(settings.rankings)}"
        )


def variables(settings_type: type[Settings]) -> dict[str, str]:
    """Field name -> the ``RANKER_*`` variable its declaration reads it from."""
    return {
        f.name: f.metadata[SETTING].variable for f in fields(settings_type) if SETTING in f.metadata
    }


def _check_ranges(settings: Settings) -> None:
    """The settings declared with a :class:`~ranker.config.limits.Range`."""
    for f in fields(settings):
        declared: Setting | None = f.metadata.get(SETTING)
        if declared is None or declared.bounds is None:
            continue
        bounds = declared.bounds
        if not bounds.low <= getattr(settings, f.name) <= bounds.high:  # NaN fails too
            raise ConfigError(bounds.message(declared.variable))


def _check_lists(settings: Settings, var: Mapping[str, str]) -> None:
    """Movement, ports, prefixes, sizes and the log: the bounds that are not plain ranges."""
    movement = var["movement_interval_s"]
    if not (
        math.isfinite(settings.movement_interval_s)
        and max(MIN_MOVEMENT_INTERVAL_S, settings.refresh_interval_s)
        <= settings.movement_interval_s
        <= MAX_MOVEMENT_INTERVAL_S
    ):
        # Shorter than a refresh, an interval could pass with no list recorded in it.
        raise ConfigError(
            f"{movement}: must be from {MIN_MOVEMENT_INTERVAL_S:g} (and at "
            f"least {var['refresh_interval_s']}) to {MAX_MOVEMENT_INTERVAL_S:g} seconds"
        )
    if not 0 < settings.port < 65536:
        raise ConfigError(f"{var['port']} (or --port): {settings.port} is not a TCP port (1-65535)")
    if not KEY_PREFIX_RE.fullmatch(settings.key_prefix):
        raise ConfigError(
            f"{var['key_prefix']}: {settings.key_prefix!r} must be 1-64 characters of A-Za-z0-9._:-"
        )
    if settings.max_pending_events < 1000:
        raise ConfigError(f"{var['max_pending_events']}: must be at least 1000")
    if not MIN_PRUNE_BELOW <= settings.prune_below < 1:
        raise ConfigError(f"{var['prune_below']}: must be at least {MIN_PRUNE_BELOW} and below 1")
    if not 1 <= settings.workers <= MAX_WORKERS:
        raise ConfigError(f"{var['workers']} (or --workers): must be from 1 to {MAX_WORKERS}")
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"{var['log_format']}: must be one of {', '.join(LOG_FORMATS)}")
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(f"{var['log_level']}: must be one of {', '.join(LOG_LEVELS)}")


def _check_per_ranking(
    settings: Settings,
    values: Mapping[str, float],
    variable: str,
    check: Callable[[float, str], None],
) -> None:
    for name, value in values.items():
        if name != SITE_WIDE and name not in settings.section_set:
            raise ConfigError(
                f"{variable}: {name!r} is neither {SITE_WIDE!r} nor a configured section"
            )
        check(value, variable)


def _check_editors(settings: Settings, var: Mapping[str, str]) -> None:
    variable = var["editor_tokens"]
    for name in settings.editor_tokens:
        if not EDITOR_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"{variable}: editor name {name[:80]!r} must be 1-64 characters of A-Za-z0-9._@-"
            )
    tokens = list(settings.editor_tokens.values())
    _check_tokens(tuple(tokens), variable)
    if len(set(tokens)) != len(tokens):
        # One token, two names: the audit log could not say which editor it was.
        raise ConfigError(f"{variable}: two editors share a token; give each its own")


def _check_windows(settings: Settings, var: Mapping[str, str]) -> None:
    windows = var["windows"]
    if len(settings.windows) > MAX_WINDOWS:
        raise ConfigError(f"{windows}: at most {MAX_WINDOWS} windows")
    for name, half_life in settings.windows.items():
        if not SLUG_RE.fullmatch(name):
            raise ConfigError(
                f"{windows}: {name!r} is not a slug (lowercase letters, digits and inner dashes)"
            )
        if name == DEFAULT_WINDOW:
            raise ConfigError(
                f"{windows}: {DEFAULT_WINDOW!r} is reserved for the profile "
                f"{var['half_life_s']} configures"
            )
        _check_half_life(half_life, windows)
    variable = var["window_half_lives"]
    for window, half_lives in settings.window_half_lives.items():
        if window not in settings.windows:
            configured = ", ".join(settings.windows) or "none"
            raise ConfigError(
                f"{variable}: {window!r} is not a window in {windows} (configured: {configured})"
            )
        _check_per_ranking(settings, half_lives, variable, _check_half_life)


def _check_ingest_limits(settings: Settings, var: Mapping[str, str]) -> None:
    if not 0 <= settings.dedup_window_s <= MAX_DEDUP_WINDOW_S:
        raise ConfigError(
            f"{var['dedup_window_s']}: must be a whole number of seconds from 0 (off) to "
            f"{MAX_DEDUP_WINDOW_S}"
        )
    ttl = settings.event_metadata_ttl_s
    if ttl != 0 and not MIN_EVENT_METADATA_TTL_S <= ttl <= MAX_EVENT_METADATA_TTL_S:
        raise ConfigError(
            f"{var['event_metadata_ttl_s']}: must be 0 (keep for ever) or a whole number of "
            f"seconds from {MIN_EVENT_METADATA_TTL_S} to {MAX_EVENT_METADATA_TTL_S}"
        )
    if settings.max_pending_bytes < settings.max_body_bytes:
        raise ConfigError(
            f"{var['max_pending_bytes']}: must be at least {var['max_body_bytes']} "
            f"({settings.max_body_bytes}), or no body of the largest size could ever be taken"
        )
    if settings.client_max_pending_bytes < 1024:
        raise ConfigError(
            f"{var['client_max_pending_bytes']}: must be at least 1024 (a client's one request "
            "in progress is always let in, however large)"
        )
    if not (math.isfinite(settings.client_events_per_s) and settings.client_events_per_s >= 0):
        raise ConfigError(f"{var['client_events_per_s']}: must be 0 (no limit) or more")
    if settings.client_burst_events < settings.max_batch_events:
        raise ConfigError(
            f"{var['client_burst_events']}: must be at least {var['max_batch_events']} "
            f"({settings.max_batch_events}), or a full batch could never be taken"
        )


def check_sections(sections: tuple[str, ...], name: str) -> None:
    """Raise :class:`ConfigError`, naming ``name``, unless these are distinct section slugs."""
    if not sections:
        raise ConfigError(f"{name}: at least one section is required")
    for slug in sections:
        if not SLUG_RE.fullmatch(slug):
            raise ConfigError(
                f"{name}: {slug!r} is not a slug (lowercase letters, digits and inner dashes)"
            )
        if slug == SITE_WIDE:
            raise ConfigError(f"{name}: {SITE_WIDE!r} is reserved for the site-wide ranking")
    if len(set(sections)) != len(sections):
        raise ConfigError(f"{name}: a section is listed twice")


def _check_redis(settings: Settings, var: Mapping[str, str]) -> None:
    name = var["redis_url"]
    if not settings.redis_cluster:
        if settings.redis_url is not None:
            if "," in settings.redis_url:
                raise ConfigError(f"{name}: a list of nodes needs {var['redis_cluster']}=true")
            check_redis_url(settings.redis_url, name)
        return
    if settings.redis_url is None:
        # The embedded server is one node.
        raise ConfigError(f"{var['redis_cluster']}: needs {name}, a node of the cluster")
    for url in settings.redis_urls:
        check_redis_url(url, name)
        parts = urlsplit(url)
        if parts.scheme == "unix":
            raise ConfigError(f"{name}: a cluster's nodes are reached over TCP, not unix://")
        if parts.path.strip("/") not in ("", "0"):
            raise ConfigError(f"{name}: a cluster has database 0 only")


def check_redis_url(url: str, name: str) -> None:
    """Raise :class:`ConfigError`, naming ``name``, unless redis-py can make connections from
    ``url``. Without this a bad port or query would first fail at the first connection, as a
    traceback, and a path that is no database number would quietly mean database 0."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        # The value is never echoed: it may hold a password.
        raise ConfigError(f"{name}: must start with redis://, rediss:// or unix://")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(f"{name}: the port must be one number from 1 to 65535")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{name}: a unix:// URL needs the socket's path")
    else:
        database = parts.path[1:]
        if database and not (database.isascii() and database.isdigit()):
            raise ConfigError(f"{name}: the path must be a database number (e.g. /0), or nothing")
    reason = _redis_url_error(url)
    if reason is not None:
        if parts.password:
            reason = reason.replace(parts.password, "***")
        raise ConfigError(f"{name}: not a usable Redis URL: {reason}")


@functools.lru_cache(maxsize=32)
def _redis_url_error(url: str) -> str | None:
    """Why redis-py cannot make a connection from ``url``, or None. Cached: it takes about a
    millisecond, and settings are made again for every override (and every test)."""
    try:
        # Makes a connection object, without connecting: what a query would first fail on.
        pool = ConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, TypeError, RedisError) as exc:
        return str(exc)
    return None


def _check_positive(value: float, name: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}: {value!r} must be a positive number")


def _check_half_life(value: float, name: str) -> None:
    if not (math.isfinite(value) and value >= MIN_HALF_LIFE_S):
        raise ConfigError(
            f"{name}: {value!r} must be a number of seconds, at least {MIN_HALF_LIFE_S:g}"
        )


def _check_tokens(tokens: tuple[str, ...], name: str) -> None:
    for number, token in enumerate(tokens, 1):
        if "${" in token:
            raise ConfigError(
                f"{name}: token {number} of {len(tokens)} holds an unexpanded ${{...}}: what "
                "set it did not substitute the variable"
            )
        if not TOKEN_RE.fullmatch(token):
            # Which one, by position: the value itself is a secret and is not echoed.
            raise ConfigError(
                f"{name}: token {number} of {len(tokens)} must be 16-256 visible ASCII "
                "characters with no commas or spaces (e.g. from `openssl rand -hex 32`)"
            )


def _check_origins(origins: tuple[str, ...], name: str) -> None:
    if ANY_ORIGIN in origins:
        if len(origins) > 1:
            raise ConfigError(f"{name}: {ANY_ORIGIN!r} allows every origin; list nothing else")
        return
    for origin in origins:
        if not ORIGIN_RE.fullmatch(origin):
            raise ConfigError(
                f"{name}: {origin[:300]!r} is not an origin: http:// or https://, a lowercase "
                "host and an optional port, no path or trailing slash "
                "(e.g. https://www.example.com), or the single value *"
            )
