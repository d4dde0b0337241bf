"""Reading settings from the environment: every ``RANKER_*`` variable, parsed and named.

The one place that reads the environment; the CLI passes ``os.environ`` in, and the
:class:`~ranker.config.Settings` built here checks the values it is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from ranker.config import DEFAULT_SECTIONS, ConfigError, Settings
from ranker.config_checks import check_sections

T = TypeVar("T")

UNEXPANDED = re.compile(r"\$\{[^}]*\}")
"""A variable reference left as it was by whatever should have substituted it (a Compose that
does not know the form, e.g. podman-compose 1.0.3 with ``${VAR:-}``): taken as a value, it
would become a write token anyone reading the Compose file knows."""


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Build settings from ``RANKER_*`` variables (see :meth:`Settings.from_env`).

    Raises :class:`ConfigError`, naming the variable, for a malformed value.
    """

    def get(name: str, parse: Callable[[str, str], T], default: T) -> T:
        raw = env.get(name, "").strip()
        if UNEXPANDED.search(raw):
            # The value is not echoed: the rest of it may be a secret.
            raise ConfigError(
                f"{name}: holds an unexpanded ${{...}}: what set it (a Compose file, a script) "
                "did not substitute the variable; set the value itself, or use a Compose that "
                "expands it (README: Docker Compose)"
            )
        return parse(raw, name) if raw else default

    sections = get("RANKER_SECTIONS", _parse_sections, DEFAULT_SECTIONS)
    defaults = Settings(sections=sections)
    max_body_bytes = get("RANKER_MAX_BODY_BYTES", _parse_int, defaults.max_body_bytes)
    max_batch_events = get("RANKER_MAX_BATCH_EVENTS", _parse_int, defaults.max_batch_events)
    # By default, room for at least one body of the largest size.
    max_pending_bytes = get(
        "RANKER_MAX_PENDING_BYTES", _parse_int, max(defaults.max_pending_bytes, max_body_bytes)
    )
    return Settings(
        redis_url=get("RANKER_REDIS_URL", _parse_redis_url, None),
        host=get("RANKER_HOST", _parse_str, defaults.host),
        port=get("RANKER_PORT", _parse_int, defaults.port),
        half_life_s=get("RANKER_HALF_LIFE_S", _parse_float, defaults.half_life_s),
        section_half_lives=get("RANKER_SECTION_HALF_LIVES", _parse_per_ranking, {}),
        max_age_hours=get("RANKER_MAX_AGE_HOURS", _parse_per_ranking, {}),
        sections=sections,
        windows=get("RANKER_WINDOWS", _parse_windows, defaults.windows),
        window_half_lives=get("RANKER_WINDOW_SECTION_HALF_LIVES", _parse_window_half_lives, {}),
        key_prefix=get("RANKER_KEY_PREFIX", _parse_str, defaults.key_prefix),
        max_body_bytes=max_body_bytes,
        max_set_size=get("RANKER_MAX_SET_SIZE", _parse_int, defaults.max_set_size),
        max_pending_events=get(
            "RANKER_MAX_PENDING_EVENTS", _parse_int, defaults.max_pending_events
        ),
        prune_below=get("RANKER_PRUNE_BELOW", _parse_float, defaults.prune_below),
        refresh_interval_s=get(
            "RANKER_REFRESH_INTERVAL_S", _parse_float, defaults.refresh_interval_s
        ),
        movement_interval_s=get(
            "RANKER_MOVEMENT_INTERVAL_S", _parse_float, defaults.movement_interval_s
        ),
        stale_while_revalidate_s=get(
            "RANKER_STALE_WHILE_REVALIDATE_S", _parse_int, defaults.stale_while_revalidate_s
        ),
        stale_if_error_s=get("RANKER_STALE_IF_ERROR_S", _parse_int, defaults.stale_if_error_s),
        redis_timeout_s=get("RANKER_REDIS_TIMEOUT_S", _parse_float, defaults.redis_timeout_s),
        redis_max_connections=get(
            "RANKER_REDIS_MAX_CONNECTIONS", _parse_int, defaults.redis_max_connections
        ),
        data_dir=get("RANKER_DATA_DIR", lambda raw, _: Path(raw), defaults.data_dir),
        redis_server=get("RANKER_REDIS_SERVER", _parse_str, None),
        log_level=get("RANKER_LOG_LEVEL", lambda raw, _: raw.upper(), defaults.log_level),
        workers=get("RANKER_WORKERS", _parse_int, defaults.workers),
        log_format=get("RANKER_LOG_FORMAT", lambda raw, _: raw.lower(), defaults.log_format),
        access_log=get("RANKER_ACCESS_LOG", _parse_bool, defaults.access_log),
        request_timeout_s=get("RANKER_REQUEST_TIMEOUT_S", _parse_float, defaults.request_timeout_s),
        header_timeout_s=get("RANKER_HEADER_TIMEOUT_S", _parse_float, defaults.header_timeout_s),
        max_connections=get("RANKER_MAX_CONNECTIONS", _parse_int, defaults.max_connections),
        idempotency_window_s=get(
            "RANKER_IDEMPOTENCY_WINDOW_S", _parse_int, defaults.idempotency_window_s
        ),
        dedup_window_s=get("RANKER_DEDUP_WINDOW_S", _parse_int, defaults.dedup_window_s),
        max_pending_bytes=max_pending_bytes,
        # By default half the budget: one client never holds it all.
        client_max_pending_bytes=get(
            "RANKER_CLIENT_MAX_PENDING_BYTES", _parse_int, max_pending_bytes // 2
        ),
        max_batch_events=max_batch_events,
        client_events_per_s=get(
            "RANKER_CLIENT_EVENTS_PER_S", _parse_float, defaults.client_events_per_s
        ),
        # By default, room for at least one batch of the largest size.
        client_burst_events=get(
            "RANKER_CLIENT_BURST_EVENTS",
            _parse_int,
            max(defaults.client_burst_events, max_batch_events),
        ),
        write_tokens=get("RANKER_WRITE_TOKENS", _parse_list, ()),
        editor_tokens=get("RANKER_EDITOR_TOKENS", _parse_editor_tokens, {}),
        audit_max_entries=get("RANKER_AUDIT_MAX_ENTRIES", _parse_int, defaults.audit_max_entries),
        event_metadata_ttl_s=get(
            "RANKER_EVENT_METADATA_TTL_S", _parse_int, defaults.event_metadata_ttl_s
        ),
        cors_origins=get("RANKER_CORS_ORIGINS", _parse_list, ()),
    )


def _parse_str(raw: str, name: str) -> str:
    return raw


def _parse_int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None


def _parse_bool(raw: str, name: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: {raw!r} is not one of true, false, 1, 0, yes, no, on, off")


def _parse_float(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}: {raw!r} is not a finite number")
    return value


def _parse_redis_url(raw: str, name: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        # The value is not echoed: it may hold a password.
        raise ConfigError(f"{name}: must start with redis://, rediss:// or unix://")
    return raw


def _parse_list(raw: str, name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_sections(raw: str, name: str) -> tuple[str, ...]:
    sections = _parse_list(raw, name)
    check_sections(sections, name)
    return sections


def _parse_per_ranking(raw: str, name: str, form: str = "section=number") -> dict[str, float]:
    values: dict[str, float] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        slug, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"{name}: {part.strip()!r} is not of the form {form}")
        if slug.strip() in values:
            raise ConfigError(f"{name}: {slug.strip()!r} is given twice")
        values[slug.strip()] = _parse_float(value.strip(), name)
    return values


def _parse_editor_tokens(raw: str, name: str) -> dict[str, str]:
    """``editor:token`` pairs, comma-separated. Split at the first colon: names have none, a
    token may."""
    tokens: dict[str, str] = {}
    for number, part in enumerate(_parse_list(raw, name), 1):
        editor, sep, token = part.partition(":")
        if not sep or not editor.strip() or not token.strip():
            # By position: the entry holds a secret and is not echoed.
            raise ConfigError(f"{name}: entry {number} is not of the form editor:token")
        if editor.strip() in tokens:
            raise ConfigError(f"{name}: editor {editor.strip()[:80]!r} is given twice")
        tokens[editor.strip()] = token.strip()
    return tokens


def _parse_windows(raw: str, name: str) -> dict[str, float]:
    if raw.lower() == "none":
        return {}
    return _parse_per_ranking(raw, name, "window=seconds")


def _parse_window_half_lives(raw: str, name: str) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for window_ranking, value in _parse_per_ranking(raw, name, "window:section=seconds").items():
        window, sep, ranking = window_ranking.partition(":")
        if not sep:
            raise ConfigError(
                f"{name}: {window_ranking!r} is not of the form window:section=seconds"
            )
        values.setdefault(window.strip(), {})[ranking.strip()] = value
    return values
