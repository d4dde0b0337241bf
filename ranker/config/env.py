"""Reading settings from the environment: every declared ``RANKER_*`` variable, parsed and named.

The one place that reads the environment; the CLI passes ``os.environ`` in, and the
:class:`~ranker.config.Settings` built here checks the values it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from typing import Any, cast

from .limits import SETTING, ConfigError, Setting
from .settings import Settings

UNEXPANDED = re.compile(r"\$\{[^}]*\}")
"""A variable reference left as it was by whatever should have substituted it (a Compose that
does not know the form, e.g. podman-compose 1.0.3 with ``${VAR:-}``): taken as a value, it
would become a write token anyone reading the Compose file knows."""


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Build settings from ``RANKER_*`` variables, each as its field declares it: a variable
    unset or empty takes the field's default (or its derived default).

    Raises :class:`ConfigError`, naming the variable, for a malformed value.
    """
    values: dict[str, Any] = {}
    for f in fields(Settings):
        declared: Setting | None = f.metadata.get(SETTING)
        if declared is None:
            continue  # derived from the others, not set
        raw = env.get(declared.variable, "").strip()
        if raw:
            values[f.name] = _parse(declared, raw)
        elif declared.derive is not None:
            values[f.name] = declared.derive(values)
        elif f.default is not MISSING:
            values[f.name] = f.default
        else:
            values[f.name] = cast(Callable[[], Any], f.default_factory)()
    return Settings(**values)


def _parse(declared: Setting, raw: str) -> Any:
    if UNEXPANDED.search(raw):
        # The value is not echoed: the rest of it may be a secret.
        raise ConfigError(
            f"{declared.variable}: holds an unexpanded ${{...}}: what set it (a Compose file, a "
            "script) did not substitute the variable; set the value itself, or use a Compose "
            "that expands it (docs/deploy.md: Docker Compose)"
        )
    return declared.parse(raw, declared.variable)
