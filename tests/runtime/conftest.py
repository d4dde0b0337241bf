"""Fixtures of the runtime tests."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest


@pytest.fixture
def open_files_limit() -> Iterator[tuple[int, int]]:
    """The process's open-files limits, put back as they were after the test."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)
