"""How each setting's text is read: a parser takes the raw value and the variable's name, and
raises :class:`~ranker.config.limits.ConfigError` naming the variable for a malformed one."""

from __future__ import annotations

import math
from pathlib import Path

from .checks import check_sections
from .limits import ConfigError


def parse_str(raw: str, name: str) -> str:
    return raw


def parse_int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None


def parse_bool(raw: str, name: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: {raw!r} is not one of true, false, 1, 0, yes, no, on, off")


def parse_float(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}: {raw!r} is not a finite number")
    return value


def parse_redis_url(raw: str, name: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        # The value is not echoed: it may hold a password.
        raise ConfigError(f"{name}: must start with redis://, rediss:// or unix://")
    return raw


def parse_list(raw: str, name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_sections(raw: str, name: str) -> tuple[str, ...]:
    sections = parse_list(raw, name)
    check_sections(sections, name)
    return sections


def parse_per_ranking(raw: str, name: str, form: str = "section=number") -> dict[str, float]:
    values: dict[str, float] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        slug, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"{name}: {part.strip()!r} is not of the form {form}")
        if slug.strip() in values:
            raise ConfigError(f"{name}: {slug.strip()!r} is given twice")
        values[slug.strip()] = parse_float(value.strip(), name)
    return values


def parse_editor_tokens(raw: str, name: str) -> dict[str, str]:
    """``editor:token`` pairs, comma-separated. Split at the first colon: names have none, a
    token may."""
    tokens: dict[str, str] = {}
    for number, part in enumerate(parse_list(raw, name), 1):
        editor, sep, token = part.partition(":")
        if not sep or not editor.strip() or not token.strip():
            # By position: the entry holds a secret and is not echoed.
            raise ConfigError(f"{name}: entry {number} is not of the form editor:token")
        if editor.strip() in tokens:
            raise ConfigError(f"{name}: editor {editor.strip()[:80]!r} is given twice")
        tokens[editor.strip()] = token.strip()
    return tokens


def parse_windows(raw: str, name: str) -> dict[str, float]:
    if raw.lower() == "none":
        return {}
    return parse_per_ranking(raw, name, "window=seconds")


def parse_window_half_lives(raw: str, name: str) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for window_ranking, value in parse_per_ranking(raw, name, "window:section=seconds").items():
        window, sep, ranking = window_ranking.partition(":")
        if not sep:
            raise ConfigError(
                f"{name}: {window_ranking!r} is not of the form window:section=seconds"
            )
        values.setdefault(window.strip(), {})[ranking.strip()] = value
    return values


def parse_path(raw: str, name: str) -> Path:
    return Path(raw)


def parse_upper(raw: str, name: str) -> str:
    return raw.upper()


def parse_lower(raw: str, name: str) -> str:
    return raw.lower()
