"""Settings: their defaults, derived values and reprs."""

from __future__ import annotations

import dataclasses

import pytest

from ranker import config
from ranker.config import DEFAULT_SECTIONS, Settings


def test_defaults_need_no_environment() -> None:
    settings = config.from_env({})
    assert settings.redis_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.half_life_s == 7200.0
    assert settings.sections == DEFAULT_SECTIONS
    assert settings.rankings == ("all", *DEFAULT_SECTIONS)
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.max_set_size == 5000
    assert settings.prune_below == 0.01


def test_maximum_ages_are_per_ranking_in_hours_and_off_by_default() -> None:
    assert config.from_env({}).max_age_hours == {}
    assert all(config.from_env({}).max_age_s_for(name) is None for name in Settings().rankings)
    settings = config.from_env({"RANKER_MAX_AGE_HOURS": "sports=48, national=24,all=1.5"})
    assert settings.max_age_hours == {"sports": 48.0, "national": 24.0, "all": 1.5}
    assert settings.max_age_s_for("sports") == 48 * 3600.0
    assert settings.max_age_s_for("all") == 5400.0
    assert settings.max_age_s_for("world") is None


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_tokens_are_not_in_the_repr() -> None:
    settings = Settings(write_tokens=("secret-token-0123456789",))
    assert "secret-token-0123456789" not in repr(settings)


def test_ingest_limits_default_to_the_documented_values() -> None:
    settings = config.from_env({})
    assert settings.request_timeout_s == 5.0
    assert settings.idempotency_window_s == 86_400
    assert settings.dedup_window_s == 1800  # a reader's repeat views count once per 30 min
    assert settings.max_pending_bytes == 16 * 1024 * 1024
    assert settings.client_max_pending_bytes == 8 * 1024 * 1024  # half the budget
    assert settings.header_timeout_s == 10.0
    assert settings.max_connections == 10_000
    assert settings.max_batch_events == 10_000
    assert settings.client_events_per_s == 0.0  # no per-client limit
    assert settings.client_burst_events == 20_000


def test_two_windows_by_default_each_with_its_half_life_and_overrides_per_ranking() -> None:
    settings = config.from_env({})
    assert settings.windows == {"trending": 1800.0, "popular": 21600.0}
    assert settings.profiles == (None, "trending", "popular")
    assert settings.half_life_for("sports", "trending") == 1800.0
    assert settings.half_life_for("all", "popular") == 21600.0
    settings = Settings(
        section_half_lives={"sports": 600.0},
        window_half_lives={"trending": {"sports": 900.0, "all": 1200.0}},
    )
    assert settings.half_life_for("sports") == 600.0
    assert settings.half_life_for("sports", "trending") == 900.0
    assert settings.half_life_for("all", "trending") == 1200.0
    assert settings.half_life_for("world", "trending") == 1800.0
    assert settings.half_life_for("sports", "popular") == 21600.0
