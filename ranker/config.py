"""Settings: one frozen dataclass and the checks on its values.

Reading them from the environment is :mod:`ranker.env`, behind :meth:`Settings.from_env`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

SITE_WIDE = "all"
"""The name of the site-wide ranking in the API and in Redis keys."""

DEFAULT_SECTIONS: tuple[str, ...] = (
    "national",
    "north-korea",
    "business",
    "finance",
    "opinion",
    "lifestyle",
    "entertainment",
    "sports",
    "world",
    "video",
    "photos",
)

DEFAULT_WINDOW = "default"
"""The name, in the API and the metrics, of the profile the lists have always served: the one
``RANKER_HALF_LIFE_S`` and ``RANKER_SECTION_HALF_LIVES`` configure."""

DEFAULT_WINDOWS: Mapping[str, float] = MappingProxyType({"trending": 1800.0, "popular": 21600.0})
"""The named windows kept unless ``RANKER_WINDOWS`` says otherwise: name -> half-life (s)."""

MAX_WINDOWS = 8
"""Each window is one more sorted set per ranking and one more set of amounts per flush."""

SLUG_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
# Braces are excluded so that the prefix can never open a Redis Cluster hash tag of its own.
KEY_PREFIX_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MIN_HALF_LIFE_S = 1.0
# Below this a rebase could leave scores too small for a double before pruning removes them.
MIN_PRUNE_BELOW = 1e-12
MAX_WORKERS = 256
# A week: a reader's marks are kept that long, one key per (visitor, article) read.
MAX_DEDUP_WINDOW_S = 7 * 86_400
MIN_MOVEMENT_INTERVAL_S = 1.0
MAX_MOVEMENT_INTERVAL_S = 7 * 86_400.0
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Visible ASCII but the comma that separates tokens in RANKER_WRITE_TOKENS; 16 characters at the
# least, so a token cannot be a short word someone guesses.
TOKEN_RE = re.compile(r"[!-+\--~]{16,256}")
# What the audit log records as who made an editorial change: one name per editor token.
EDITOR_NAME_RE = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_AUDIT_ENTRIES = 1000
MAX_AUDIT_ENTRIES = 10_000_000
# An origin as a browser sends it: lowercase scheme and host, an optional port, no path.
ORIGIN_RE = re.compile(
    r"https?://(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]+\])(?::\d{1,5})?"
)
ANY_ORIGIN = "*"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ranker can be told.

    Build it with :meth:`from_env`; nothing else reads the environment.
    """

    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    half_life_s: float = 7200.0
    section_half_lives: Mapping[str, float] = field(default_factory=dict)
    max_age_hours: Mapping[str, float] = field(default_factory=dict)
    """Per ranking (a section slug or ``all``): its lists leave out articles published longer
    ago than this many hours. A ranking not named has no limit."""
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    windows: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    """Named ranking profiles fed by the same events as the default one: window name -> its
    half-life (seconds) for every ranking not named in ``window_half_lives``."""
    window_half_lives: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per window, per ranking (a section slug or ``all``): a half-life other than the
    window's own."""
    key_prefix: str = "ranker"
    max_body_bytes: int = 1024 * 1024
    max_set_size: int = 5000
    max_pending_events: int = 200_000
    prune_below: float = 0.01
    refresh_interval_s: float = 1.0
    movement_interval_s: float = 3600.0
    """Each list item's ``movement`` compares it with the list of about this long ago."""
    stale_while_revalidate_s: int = 10
    stale_if_error_s: int = 300
    redis_timeout_s: float = 2.0
    redis_max_connections: int = 32
    data_dir: Path = Path("ranker-data")
    redis_server: str | None = None
    log_level: str = "INFO"
    workers: int = 1
    log_format: str = "json"
    access_log: bool = False
    request_timeout_s: float = 5.0
    idempotency_window_s: int = 86_400
    dedup_window_s: int = 1800
    """A visitor's views of one article count once per this many seconds; 0: every view counts."""
    max_pending_bytes: int = 16 * 1024 * 1024
    max_batch_events: int = 10_000
    client_events_per_s: float = 0.0
    client_burst_events: int = 20_000
    write_tokens: tuple[str, ...] = field(default=(), repr=False)
    """Bearer tokens that may write; none: loopback clients only. Never in a repr or a log."""
    editor_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Editor name -> the bearer token that makes editorial changes as that editor; none:
    loopback clients only, recorded as ``local``. Never in a repr or a log."""
    audit_max_entries: int = 100_000
    """The editorial audit log keeps about this many of the newest changes."""
    cors_origins: tuple[str, ...] = ()
    """Origins whose browsers may read the lists (``*``: any); none: no CORS headers."""
    section_set: frozenset[str] = field(init=False, repr=False, compare=False)
    """``sections`` as a set, for the per-event membership test."""
    profiles: tuple[str | None, ...] = field(init=False, repr=False, compare=False)
    """Every profile a ranking is kept in: None (the default profile) first, then the
    windows in the order configured."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "section_set", frozenset(self.sections))
        object.__setattr__(self, "profiles", (None, *self.windows))
        check_sections(self.sections, "RANKER_SECTIONS")
        self._check_windows()
        self._check_per_ranking(
            self.section_half_lives, "RANKER_SECTION_HALF_LIVES", _check_half_life
        )
        self._check_per_ranking(self.max_age_hours, "RANKER_MAX_AGE_HOURS", _check_positive)
        _check_half_life(self.half_life_s, "RANKER_HALF_LIFE_S")
        _check_positive(self.redis_timeout_s, "RANKER_REDIS_TIMEOUT_S")
        if not (math.isfinite(self.refresh_interval_s) and 0.01 <= self.refresh_interval_s <= 3600):
            raise ConfigError("RANKER_REFRESH_INTERVAL_S: must be from 0.01 to 3600 seconds")
        if not (
            math.isfinite(self.movement_interval_s)
            and max(MIN_MOVEMENT_INTERVAL_S, self.refresh_interval_s)
            <= self.movement_interval_s
            <= MAX_MOVEMENT_INTERVAL_S
        ):
            # Shorter than a refresh, an interval could pass with no list recorded in it.
            raise ConfigError(
                f"RANKER_MOVEMENT_INTERVAL_S: must be from {MIN_MOVEMENT_INTERVAL_S:g} (and at "
                f"least RANKER_REFRESH_INTERVAL_S) to {MAX_MOVEMENT_INTERVAL_S:g} seconds"
            )
        for value, name in (
            (self.stale_while_revalidate_s, "RANKER_STALE_WHILE_REVALIDATE_S"),
            (self.stale_if_error_s, "RANKER_STALE_IF_ERROR_S"),
        ):
            if not 0 <= value <= 31_536_000:
                raise ConfigError(f"{name}: must be a whole number of seconds from 0 to 31536000")
        if not 0 < self.port < 65536:
            raise ConfigError(f"RANKER_PORT (or --port): {self.port} is not a TCP port (1-65535)")
        if not KEY_PREFIX_RE.fullmatch(self.key_prefix):
            raise ConfigError(
                f"RANKER_KEY_PREFIX: {self.key_prefix!r} must be 1-64 characters of A-Za-z0-9._:-"
            )
        if not 1024 <= self.max_body_bytes <= 64 * 1024 * 1024:
            raise ConfigError("RANKER_MAX_BODY_BYTES: must be from 1024 to 67108864 (64 MiB)")
        if not 100 <= self.max_set_size <= 1_000_000:
            raise ConfigError("RANKER_MAX_SET_SIZE: must be from 100 to 1000000")
        if self.max_pending_events < 1000:
            raise ConfigError("RANKER_MAX_PENDING_EVENTS: must be at least 1000")
        if not 2 <= self.redis_max_connections <= 10_000:
            raise ConfigError("RANKER_REDIS_MAX_CONNECTIONS: must be from 2 to 10000")
        if not MIN_PRUNE_BELOW <= self.prune_below < 1:
            raise ConfigError(f"RANKER_PRUNE_BELOW: must be at least {MIN_PRUNE_BELOW} and below 1")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"RANKER_WORKERS (or --workers): must be from 1 to {MAX_WORKERS}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"RANKER_LOG_FORMAT: must be one of {', '.join(LOG_FORMATS)}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"RANKER_LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}")
        self._check_ingest_limits()
        _check_tokens(self.write_tokens, "RANKER_WRITE_TOKENS")
        self._check_editors()
        _check_origins(self.cors_origins, "RANKER_CORS_ORIGINS")

    def _check_per_ranking(
        self, values: Mapping[str, float], variable: str, check: Callable[[float, str], None]
    ) -> None:
        for name, value in values.items():
            if name != SITE_WIDE and name not in self.section_set:
                raise ConfigError(
                    f"{variable}: {name!r} is neither {SITE_WIDE!r} nor a configured section"
                )
            check(value, variable)

    def _check_editors(self) -> None:
        variable = "RANKER_EDITOR_TOKENS"
        for name in self.editor_tokens:
            if not EDITOR_NAME_RE.fullmatch(name):
                raise ConfigError(
                    f"{variable}: editor name {name[:80]!r} must be 1-64 characters of "
                    "A-Za-z0-9._@-"
                )
        tokens = list(self.editor_tokens.values())
        _check_tokens(tuple(tokens), variable)
        if len(set(tokens)) != len(tokens):
            # One token, two names: the audit log could not say which editor it was.
            raise ConfigError(f"{variable}: two editors share a token; give each its own")
        if not MIN_AUDIT_ENTRIES <= self.audit_max_entries <= MAX_AUDIT_ENTRIES:
            raise ConfigError(
                f"RANKER_AUDIT_MAX_ENTRIES: must be from {MIN_AUDIT_ENTRIES} to {MAX_AUDIT_ENTRIES}"
            )

    def _check_windows(self) -> None:
        if len(self.windows) > MAX_WINDOWS:
            raise ConfigError(f"RANKER_WINDOWS: at most {MAX_WINDOWS} windows")
        for name, half_life in self.windows.items():
            if not SLUG_RE.fullmatch(name):
                raise ConfigError(
                    f"RANKER_WINDOWS: {name!r} is not a slug (lowercase letters, digits and "
                    "inner dashes)"
                )
            if name == DEFAULT_WINDOW:
                raise ConfigError(
                    f"RANKER_WINDOWS: {DEFAULT_WINDOW!r} is reserved for the profile "
                    "RANKER_HALF_LIFE_S configures"
                )
            _check_half_life(half_life, "RANKER_WINDOWS")
        variable = "RANKER_WINDOW_SECTION_HALF_LIVES"
        for window, half_lives in self.window_half_lives.items():
            if window not in self.windows:
                configured = ", ".join(self.windows) or "none"
                raise ConfigError(
                    f"{variable}: {window!r} is not a window in RANKER_WINDOWS "
                    f"(configured: {configured})"
                )
            self._check_per_ranking(half_lives, variable, _check_half_life)

    def _check_ingest_limits(self) -> None:
        if not (math.isfinite(self.request_timeout_s) and 0.1 <= self.request_timeout_s <= 600):
            raise ConfigError("RANKER_REQUEST_TIMEOUT_S: must be from 0.1 to 600 seconds")
        if not 60 <= self.idempotency_window_s <= 30 * 86_400:
            raise ConfigError(
                "RANKER_IDEMPOTENCY_WINDOW_S: must be a whole number of seconds from 60 to 2592000"
            )
        if not 0 <= self.dedup_window_s <= MAX_DEDUP_WINDOW_S:
            raise ConfigError(
                "RANKER_DEDUP_WINDOW_S: must be a whole number of seconds from 0 (off) to "
                f"{MAX_DEDUP_WINDOW_S}"
            )
        if self.max_pending_bytes < self.max_body_bytes:
            raise ConfigError(
                "RANKER_MAX_PENDING_BYTES: must be at least RANKER_MAX_BODY_BYTES "
                f"({self.max_body_bytes}), or no body of the largest size could ever be taken"
            )
        if not 1 <= self.max_batch_events <= 1_000_000:
            raise ConfigError("RANKER_MAX_BATCH_EVENTS: must be from 1 to 1000000")
        if not (math.isfinite(self.client_events_per_s) and self.client_events_per_s >= 0):
            raise ConfigError("RANKER_CLIENT_EVENTS_PER_S: must be 0 (no limit) or more")
        if self.client_burst_events < self.max_batch_events:
            raise ConfigError(
                "RANKER_CLIENT_BURST_EVENTS: must be at least RANKER_MAX_BATCH_EVENTS "
                f"({self.max_batch_events}), or a full batch could never be taken"
            )

    @property
    def cache_control(self) -> str:
        """The ``Cache-Control`` of a ranking answer: fresh for one refresh interval."""
        return (
            f"public, max-age={math.ceil(self.refresh_interval_s)}, "
            f"stale-while-revalidate={self.stale_while_revalidate_s}, "
            f"stale-if-error={self.stale_if_error_s}"
        )

    @property
    def rankings(self) -> tuple[str, ...]:
        """Every ranking this service keeps: the site-wide one first, then one per section."""
        return (SITE_WIDE, *self.sections)

    def half_life_for(self, ranking: str, window: str | None = None) -> float:
        """The half-life, in seconds, of one ranking (a section slug or ``all``) in a window
        (None: the default profile). ``window`` must be configured."""
        if window is None:
            return self.section_half_lives.get(ranking, self.half_life_s)
        overrides = self.window_half_lives.get(window)
        if overrides is not None and ranking in overrides:
            return overrides[ranking]
        return self.windows[window]

    def max_age_s_for(self, ranking: str) -> float | None:
        """How long ago, in seconds, an article in one ranking's lists may have been published
        at most; None: no limit."""
        hours = self.max_age_hours.get(ranking)
        return None if hours is None else hours * 3600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from ``RANKER_*`` variables.

        Raises :class:`ConfigError`, naming the variable, for a malformed value.
        """
        # Imported here: ranker.env builds on this module, so it cannot be imported at the top.
        from ranker.env import settings_from_env

        return settings_from_env(env)


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
