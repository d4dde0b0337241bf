"""ranker's configuration: the frozen :class:`Settings`, built once at the edge from the
environment with :func:`from_env`, and the names and bounds its values keep to.

- ``limits``: names, bounds and :class:`ConfigError` (imports nothing from ranker);
- ``checks``: the checks a :class:`Settings` runs when it is made;
- ``parsers``: how each variable's text is read;
- ``settings``: :class:`Settings`, each field declared with its variable, parser and default;
- ``env``: :func:`from_env`, the one reader of the environment.
"""

from __future__ import annotations

from .env import settings_from_env as from_env
from .limits import (
    ANY_ORIGIN,
    DEFAULT_SECTIONS,
    DEFAULT_WINDOW,
    DEFAULT_WINDOWS,
    SITE_WIDE,
    SLUG_RE,
    ConfigError,
)
from .settings import Settings, declared

__all__ = [
    "ANY_ORIGIN",
    "DEFAULT_SECTIONS",
    "DEFAULT_WINDOW",
    "DEFAULT_WINDOWS",
    "SITE_WIDE",
    "SLUG_RE",
    "ConfigError",
    "Settings",
    "declared",
    "from_env",
]
