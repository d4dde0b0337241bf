"""Settings: one frozen dataclass, each field declared with the ``RANKER_*`` variable it is
read from, its parser, its default and, for a plain number, its bounds (:func:`setting`).

The reader (:mod:`~ranker.config.env`), the checks (:mod:`~ranker.config.checks`, run whenever a
:class:`Settings` is made) and the settings page (``docs/settings.md``, tested against it) all
follow that declaration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from . import parsers as p
from .checks import check_settings
from .limits import (
    DEFAULT_SECTIONS,
    DEFAULT_WINDOWS,
    MAX_AUDIT_ENTRIES,
    MAX_CONNECTIONS,
    MIN_AUDIT_ENTRIES,
    MIN_CONNECTIONS,
    SETTING,
    SITE_WIDE,
    Range,
    Setting,
    setting,
)

MIB = 1024 * 1024
DEFAULT_MAX_PENDING_BYTES = 16 * MIB
DEFAULT_CLIENT_BURST_EVENTS = 20_000


PAGE_SECTION = "entertainment"
"""The section the page's "Top 5" box shows by default, as the seed site's page does."""

_CACHE_SECONDS = Range(0, 31_536_000, what="a whole number of seconds ")
"""What a list's answers may tell caches to keep serving it, past its freshness."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ranker can be told.

    Build it from the environment with :func:`ranker.config.from_env`; nothing else reads the
    environment.
    """

    redis_url: str | None = field(
        default=None, metadata=setting("RANKER_REDIS_URL", p.parse_redis_url)
    )
    redis_cluster: bool = field(
        default=False, metadata=setting("RANKER_REDIS_CLUSTER", p.parse_bool)
    )
    """``RANKER_REDIS_URL`` names nodes of a Redis Cluster (any of them, comma-separated)."""
    host: str = field(default="127.0.0.1", metadata=setting("RANKER_HOST", p.parse_str))
    port: int = field(default=8080, metadata=setting("RANKER_PORT", p.parse_int))
    half_life_s: float = field(
        default=7200.0, metadata=setting("RANKER_HALF_LIFE_S", p.parse_float)
    )
    section_half_lives: Mapping[str, float] = field(
        default_factory=dict, metadata=setting("RANKER_SECTION_HALF_LIVES", p.parse_per_ranking)
    )
    max_age_hours: Mapping[str, float] = field(
        default_factory=dict, metadata=setting("RANKER_MAX_AGE_HOURS", p.parse_per_ranking)
    )
    """Per ranking (a section slug or ``all``): its lists leave out articles published longer
    ago than this many hours. A ranking not named has no limit."""
    sections: tuple[str, ...] = field(
        default=DEFAULT_SECTIONS, metadata=setting("RANKER_SECTIONS", p.parse_sections)
    )
    windows: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_WINDOWS),
        metadata=setting("RANKER_WINDOWS", p.parse_windows),
    )
    """Named ranking profiles fed by the same events as the default one: window name -> its
    half-life (seconds) for every ranking not named in ``window_half_lives``."""
    window_half_lives: Mapping[str, Mapping[str, float]] = field(
        default_factory=dict,
        metadata=setting("RANKER_WINDOW_SECTION_HALF_LIVES", p.parse_window_half_lives),
    )
    """Per window, per ranking (a section slug or ``all``): a half-life other than the
    window's own."""
    key_prefix: str = field(default="ranker", metadata=setting("RANKER_KEY_PREFIX", p.parse_str))
    max_body_bytes: int = field(
        default=MIB,
        metadata=setting(
            "RANKER_MAX_BODY_BYTES", p.parse_int, bounds=Range(1024, 64 * MIB, unit=" (64 MiB)")
        ),
    )
    max_set_size: int = field(
        default=5000,
        metadata=setting("RANKER_MAX_SET_SIZE", p.parse_int, bounds=Range(100, 1_000_000)),
    )
    site_shards: int = field(
        default=1,
        metadata=setting("RANKER_SITE_SHARDS", p.parse_int, bounds=Range(1, 64)),
    )
    """How many sub-rankings, each in a hash slot of its own, the site-wide ranking is spread
    over (an article always in the same one), so that on a Redis Cluster its writes, which every
    view makes, are not all one node's. Its lists merge the sub-rankings' tops, exactly."""
    max_pending_events: int = field(
        default=200_000, metadata=setting("RANKER_MAX_PENDING_EVENTS", p.parse_int)
    )
    apply_interval_s: float = field(
        default=0.3,
        metadata=setting(
            "RANKER_APPLY_INTERVAL_S", p.parse_float, bounds=Range(0, 10, unit=" seconds")
        ),
    )
    """While flushes follow each other (one still in flight as the next is sent, or earlier
    ones waiting), a process applies them to the scores this long after its last pass; those
    between are counted and wait in Redis, to be added in one pass, a ranking at a time. 0: each
    flush is applied as it is counted. 0.3 s, not less: Redis's work for a pass is per
    (article, profile) it applies, so passes 0.1 s apart took 1.02-1.19 times fewer views a
    second under 8 busy senders, each view in the lists about 0.1 s sooner (p50)."""
    prune_below: float = field(default=0.01, metadata=setting("RANKER_PRUNE_BELOW", p.parse_float))
    refresh_interval_s: float = field(
        default=1.0,
        metadata=setting(
            "RANKER_REFRESH_INTERVAL_S", p.parse_float, bounds=Range(0.01, 3600, unit=" seconds")
        ),
    )
    movement_interval_s: float = field(
        default=3600.0, metadata=setting("RANKER_MOVEMENT_INTERVAL_S", p.parse_float)
    )
    """Each list item's ``movement`` compares it with the list of about this long ago."""
    stale_while_revalidate_s: int = field(
        default=10,
        metadata=setting("RANKER_STALE_WHILE_REVALIDATE_S", p.parse_int, bounds=_CACHE_SECONDS),
    )
    stale_if_error_s: int = field(
        default=300,
        metadata=setting("RANKER_STALE_IF_ERROR_S", p.parse_int, bounds=_CACHE_SECONDS),
    )
    redis_timeout_s: float = field(
        default=2.0, metadata=setting("RANKER_REDIS_TIMEOUT_S", p.parse_float)
    )
    redis_wait_replicas: int = field(
        default=0,
        metadata=setting("RANKER_REDIS_WAIT_REPLICAS", p.parse_int, bounds=Range(0, 16)),
    )
    """Replicas a flush's writes must reach (Redis's ``WAIT``) before its batches are
    answered; 0: answered once the primary has them."""
    redis_wait_timeout_ms: int = field(
        default=1000,
        metadata=setting(
            "RANKER_REDIS_WAIT_TIMEOUT_MS", p.parse_int, bounds=Range(1, 60_000, unit=" ms")
        ),
    )
    """How long a flush waits for those replicas before its batches are answered 503."""
    redis_max_connections: int = field(
        default=32,
        metadata=setting("RANKER_REDIS_MAX_CONNECTIONS", p.parse_int, bounds=Range(2, 10_000)),
    )
    data_dir: Path = field(
        default=Path("ranker-data"), metadata=setting("RANKER_DATA_DIR", p.parse_path)
    )
    redis_server: str | None = field(
        default=None, metadata=setting("RANKER_REDIS_SERVER", p.parse_str)
    )
    log_level: str = field(default="INFO", metadata=setting("RANKER_LOG_LEVEL", p.parse_upper))
    workers: int = field(default=1, metadata=setting("RANKER_WORKERS", p.parse_int))
    log_format: str = field(default="json", metadata=setting("RANKER_LOG_FORMAT", p.parse_lower))
    access_log: bool = field(default=False, metadata=setting("RANKER_ACCESS_LOG", p.parse_bool))
    request_timeout_s: float = field(
        default=5.0,
        metadata=setting(
            "RANKER_REQUEST_TIMEOUT_S", p.parse_float, bounds=Range(0.1, 600, unit=" seconds")
        ),
    )
    header_timeout_s: float = field(
        default=10.0,
        metadata=setting(
            "RANKER_HEADER_TIMEOUT_S", p.parse_float, bounds=Range(0.1, 600, unit=" seconds")
        ),
    )
    """A request's headers must be in within this many seconds of its first byte."""
    max_connections: int = field(
        default=10_000,
        metadata=setting(
            "RANKER_MAX_CONNECTIONS",
            p.parse_int,
            bounds=Range(MIN_CONNECTIONS, MAX_CONNECTIONS),
        ),
    )
    """Open client connections a process keeps at most (fewer if its open-files limit is low)."""
    idempotency_window_s: int = field(
        default=86_400,
        metadata=setting(
            "RANKER_IDEMPOTENCY_WINDOW_S",
            p.parse_int,
            bounds=Range(60, 30 * 86_400, what="a whole number of seconds "),
        ),
    )
    dedup_window_s: int = field(
        default=1800, metadata=setting("RANKER_DEDUP_WINDOW_S", p.parse_int)
    )
    """A visitor's views of one article count once per this many seconds; 0: every view counts."""
    max_pending_bytes: int = field(
        default=DEFAULT_MAX_PENDING_BYTES,
        # By default, room for at least one body of the largest size.
        metadata=setting(
            "RANKER_MAX_PENDING_BYTES",
            p.parse_int,
            derive=lambda read: max(DEFAULT_MAX_PENDING_BYTES, read["max_body_bytes"]),
        ),
    )
    client_max_pending_bytes: int = field(
        default=DEFAULT_MAX_PENDING_BYTES // 2,
        # By default half the budget: one client never holds it all.
        metadata=setting(
            "RANKER_CLIENT_MAX_PENDING_BYTES",
            p.parse_int,
            derive=lambda read: read["max_pending_bytes"] // 2,
        ),
    )
    """Bytes of write bodies one client's requests may hold at once, of ``max_pending_bytes``."""
    max_batch_events: int = field(
        default=10_000,
        metadata=setting("RANKER_MAX_BATCH_EVENTS", p.parse_int, bounds=Range(1, 1_000_000)),
    )
    client_events_per_s: float = field(
        default=0.0, metadata=setting("RANKER_CLIENT_EVENTS_PER_S", p.parse_float)
    )
    client_burst_events: int = field(
        default=DEFAULT_CLIENT_BURST_EVENTS,
        # By default, room for at least one batch of the largest size.
        metadata=setting(
            "RANKER_CLIENT_BURST_EVENTS",
            p.parse_int,
            derive=lambda read: max(DEFAULT_CLIENT_BURST_EVENTS, read["max_batch_events"]),
        ),
    )
    write_tokens: tuple[str, ...] = field(
        default=(), repr=False, metadata=setting("RANKER_WRITE_TOKENS", p.parse_list)
    )
    """Bearer tokens that may write; none: loopback clients only. Never in a repr or a log."""
    editor_tokens: Mapping[str, str] = field(
        default_factory=dict,
        repr=False,
        metadata=setting("RANKER_EDITOR_TOKENS", p.parse_editor_tokens),
    )
    """Editor name -> the bearer token that makes editorial changes as that editor; none:
    loopback clients only, recorded as ``local``. Never in a repr or a log."""
    event_metadata_ttl_s: int = field(
        default=3 * 86_400, metadata=setting("RANKER_EVENT_METADATA_TTL_S", p.parse_int)
    )
    """An article whose metadata only events have set (title, url) is forgotten this long after
    the last event that carried either; 0: never. What the CMS or an editor set is kept."""
    audit_max_entries: int = field(
        default=100_000,
        metadata=setting(
            "RANKER_AUDIT_MAX_ENTRIES",
            p.parse_int,
            bounds=Range(MIN_AUDIT_ENTRIES, MAX_AUDIT_ENTRIES),
        ),
    )
    """The editorial audit log keeps about this many of the newest changes."""
    cors_origins: tuple[str, ...] = field(
        default=(), metadata=setting("RANKER_CORS_ORIGINS", p.parse_list)
    )
    """Origins whose browsers may read the lists (``*``: any); none: no CORS headers."""
    demo_page: bool = field(default=True, metadata=setting("RANKER_DEMO_PAGE", p.parse_bool))
    """Serve the page at ``/``: the site's three boxes, live. False: ``/`` is a 404."""
    page_section: str | None = field(
        default=None, metadata=setting("RANKER_PAGE_SECTION", p.parse_str)
    )
    """The section of the page's "Top 5" box; None: ``entertainment`` when it is a section,
    else the first section."""
    section_set: frozenset[str] = field(init=False, repr=False, compare=False)
    """``sections`` as a set, for the per-event membership test."""
    profiles: tuple[str | None, ...] = field(init=False, repr=False, compare=False)
    """Every profile a ranking is kept in: None (the default profile) first, then the
    windows in the order configured."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "section_set", frozenset(self.sections))
        object.__setattr__(self, "profiles", (None, *self.windows))
        check_settings(self)

    @property
    def redis_urls(self) -> tuple[str, ...]:
        """The Redis URLs: one, or in cluster mode each node ``RANKER_REDIS_URL`` names."""
        if self.redis_url is None:
            return ()
        if not self.redis_cluster:
            return (self.redis_url,)
        return tuple(url.strip() for url in self.redis_url.split(",") if url.strip())

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

    @property
    def page_ranking(self) -> str:
        """The ranking of the page's section box (see ``page_section``)."""
        if self.page_section is not None:
            return self.page_section
        return PAGE_SECTION if PAGE_SECTION in self.section_set else self.sections[0]

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


def declared() -> dict[str, Setting]:
    """Every setting, by field name, in the order declared."""
    return {f.name: f.metadata[SETTING] for f in fields(Settings) if SETTING in f.metadata}
