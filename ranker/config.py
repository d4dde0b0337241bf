"""Settings: one frozen dataclass, and the names and bounds its values must keep to.

The checks themselves are :mod:`ranker.config_checks`, run whenever a :class:`Settings` is made;
reading settings from the environment is :mod:`ranker.env`, behind :meth:`Settings.from_env`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
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
MIN_CONNECTIONS = 16
MAX_CONNECTIONS = 1_000_000
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
# Titles and URLs from events: kept at least an hour after the last event that carried them
# (0: for ever), at most a year.
MIN_EVENT_METADATA_TTL_S = 3600
MAX_EVENT_METADATA_TTL_S = 365 * 86_400
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
    header_timeout_s: float = 10.0
    """A request's headers must be in within this many seconds of its first byte."""
    max_connections: int = 10_000
    """Open client connections a process keeps at most (fewer if its open-files limit is low)."""
    idempotency_window_s: int = 86_400
    dedup_window_s: int = 1800
    """A visitor's views of one article count once per this many seconds; 0: every view counts."""
    max_pending_bytes: int = 16 * 1024 * 1024
    client_max_pending_bytes: int = 8 * 1024 * 1024
    """Bytes of write bodies one client's requests may hold at once, of ``max_pending_bytes``."""
    max_batch_events: int = 10_000
    client_events_per_s: float = 0.0
    client_burst_events: int = 20_000
    write_tokens: tuple[str, ...] = field(default=(), repr=False)
    """Bearer tokens that may write; none: loopback clients only. Never in a repr or a log."""
    editor_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Editor name -> the bearer token that makes editorial changes as that editor; none:
    loopback clients only, recorded as ``local``. Never in a repr or a log."""
    event_metadata_ttl_s: int = 3 * 86_400
    """An article whose metadata only events have set (title, url) is forgotten this long after
    the last event that carried either; 0: never. What the CMS or an editor set is kept."""
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
        # Imported here: the checks build on this module, so they cannot be imported at the top.
        from ranker.config_checks import check_settings

        check_settings(self)

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
