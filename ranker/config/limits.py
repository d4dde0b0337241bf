"""The names and bounds settings keep to, and :class:`ConfigError`. Imports nothing from ranker:
every other module of the package builds on it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

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

DEFAULT_LIMIT = 10
"""Items in a list when ``limit`` is not given."""
MAX_LIMIT = 100
"""The most items a list may hold: each list is read at most this deep."""


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Range:
    """The values a number setting may take, ``low`` to ``high`` inclusive (a float must also
    be finite), and how its error says so: ``<VARIABLE>: must be <what>from <low> to
    <high><unit>``."""

    low: float
    high: float
    what: str = ""
    unit: str = ""

    def message(self, variable: str) -> str:
        return f"{variable}: must be {self.what}from {self.low} to {self.high}{self.unit}"


SETTING = "ranker.setting"
"""The key of a field's :class:`Setting` in its metadata."""


@dataclass(frozen=True, slots=True)
class Setting:
    """How one field is set from the environment."""

    variable: str
    """The ``RANKER_*`` variable it is read from."""
    parse: Callable[[str, str], Any]
    """Raw text and the variable's name -> the value, or :class:`ConfigError`."""
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    """When the variable is unset: its default from the values read before it (None: the
    field's own default)."""
    bounds: Range | None = None
    """For a plain number: the values it may take (checked by ``check_settings``)."""


def setting(
    variable: str,
    parse: Callable[[str, str], Any],
    *,
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
    bounds: Range | None = None,
) -> dict[str, Setting]:
    """A field's metadata: the variable it is read from, its parser, and so on."""
    return {SETTING: Setting(variable, parse, derive, bounds)}
