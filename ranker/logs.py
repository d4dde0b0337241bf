"""Logging set-up, shared by the supervisor and every worker process."""

from __future__ import annotations

import logging
import sys

from .config import Settings


def configure_logging(settings: Settings) -> None:
    """Send log records at ``settings.log_level`` and above to stderr."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
        stream=sys.stderr,
    )
