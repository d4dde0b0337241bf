"""Settings from the environment: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ranker.config import DEFAULT_SECTIONS, ConfigError, Settings


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.half_life_s == 7200.0
    assert settings.sections == DEFAULT_SECTIONS
    assert settings.rankings == ("all", *DEFAULT_SECTIONS)
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.max_set_size == 5000
    assert settings.prune_below == 0.01


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "RANKER_REDIS_URL": "redis://10.0.0.5:6380/2",
            "RANKER_HOST": "0.0.0.0",
            "RANKER_PORT": "9000",
            "RANKER_HALF_LIFE_S": "3600",
            "RANKER_SECTIONS": "news, sports ,video",
            "RANKER_SECTION_HALF_LIVES": "sports=600, all=1800",
            "RANKER_KEY_PREFIX": "site-a:ranker",
            "RANKER_MAX_BODY_BYTES": "2048",
            "RANKER_MAX_SET_SIZE": "1000",
            "RANKER_MAX_PENDING_EVENTS": "5000",
            "RANKER_PRUNE_BELOW": "0.001",
            "RANKER_REDIS_TIMEOUT_S": "0.5",
            "RANKER_REDIS_MAX_CONNECTIONS": "8",
            "RANKER_DATA_DIR": "/var/lib/ranker",
            "RANKER_REDIS_SERVER": "/usr/bin/redis-server",
            "RANKER_LOG_LEVEL": "debug",
            "RANKER_WRITE_TOKENS": " cms-token-0123456789, analytics-token-abcdef ,",
            "RANKER_CORS_ORIGINS": "https://www.news.example, http://localhost:3000",
        }
    )
    assert settings == Settings(
        redis_url="redis://10.0.0.5:6380/2",
        host="0.0.0.0",
        port=9000,
        half_life_s=3600.0,
        sections=("news", "sports", "video"),
        section_half_lives={"sports": 600.0, "all": 1800.0},
        key_prefix="site-a:ranker",
        max_body_bytes=2048,
        max_set_size=1000,
        max_pending_events=5000,
        prune_below=0.001,
        redis_timeout_s=0.5,
        redis_max_connections=8,
        data_dir=Path("/var/lib/ranker"),
        redis_server="/usr/bin/redis-server",
        log_level="DEBUG",
        write_tokens=("cms-token-0123456789", "analytics-token-abcdef"),
        cors_origins=("https://www.news.example", "http://localhost:3000"),
    )
    assert settings.half_life_for("sports") == 600.0
    assert settings.half_life_for("all") == 1800.0
    assert settings.half_life_for("news") == 3600.0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RANKER_PORT", "eighty"),
        ("RANKER_PORT", "70000"),
        ("RANKER_HALF_LIFE_S", "0"),
        ("RANKER_HALF_LIFE_S", "0.5"),
        ("RANKER_HALF_LIFE_S", "-5"),
        ("RANKER_HALF_LIFE_S", "nan"),
        ("RANKER_HALF_LIFE_S", "inf"),
        ("RANKER_SECTIONS", "News"),
        ("RANKER_SECTIONS", "sports,sports"),
        ("RANKER_SECTIONS", "sports,all"),
        ("RANKER_SECTIONS", ","),
        ("RANKER_SECTION_HALF_LIVES", "sports"),
        ("RANKER_SECTION_HALF_LIVES", "nowhere=60"),
        ("RANKER_SECTION_HALF_LIVES", "sports=-1"),
        ("RANKER_SECTION_HALF_LIVES", "sports=60,sports=120"),
        ("RANKER_REDIS_URL", "localhost:6379"),
        ("RANKER_KEY_PREFIX", "{tag}"),
        ("RANKER_MAX_BODY_BYTES", "10"),
        ("RANKER_MAX_SET_SIZE", "5"),
        ("RANKER_MAX_SET_SIZE", "2000000"),
        ("RANKER_MAX_BODY_BYTES", "1000000000"),
        ("RANKER_MAX_PENDING_EVENTS", "10"),
        ("RANKER_REDIS_MAX_CONNECTIONS", "1"),
        ("RANKER_PRUNE_BELOW", "0"),
        ("RANKER_PRUNE_BELOW", "1"),
        ("RANKER_REDIS_TIMEOUT_S", "0"),
        ("RANKER_LOG_LEVEL", "chatty"),
        ("RANKER_CORS_ORIGINS", "www.news.example"),
        ("RANKER_CORS_ORIGINS", "https://www.news.example/"),
        ("RANKER_CORS_ORIGINS", "https://www.news.example/path"),
        ("RANKER_CORS_ORIGINS", "https://WWW.news.example"),
        ("RANKER_CORS_ORIGINS", "ftp://files.news.example"),
        ("RANKER_CORS_ORIGINS", "null"),
        ("RANKER_CORS_ORIGINS", "*,https://www.news.example"),
    ],
)
def test_a_bad_value_is_an_error_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_a_bad_redis_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"RANKER_REDIS_URL": "http://user:s3cret@redis:6379"})
    assert "s3cret" not in str(raised.value)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("short-token", id="too-short"),
        pytest.param("x" * 257, id="too-long"),
        pytest.param("token with-spaces-in-it", id="space"),
        pytest.param("token-with-a-tab\there", id="tab"),
        pytest.param("token-with-ünïcödé-in-it", id="non-ascii"),
    ],
)
def test_a_bad_token_is_an_error_that_does_not_echo_it(token: str) -> None:
    with pytest.raises(ConfigError, match="RANKER_WRITE_TOKENS: token 2 of 2") as raised:
        Settings.from_env({"RANKER_WRITE_TOKENS": f"good-token-0123456789,{token}"})
    assert token.strip() not in str(raised.value)
    assert "good-token-0123456789" not in str(raised.value)


def test_tokens_of_16_and_256_visible_characters_are_taken() -> None:
    tokens = ("!#$%&'()*+-./:;<", "~" * 256)
    assert Settings.from_env({"RANKER_WRITE_TOKENS": ",".join(tokens)}).write_tokens == tokens


def test_tokens_are_not_in_the_repr() -> None:
    settings = Settings(write_tokens=("secret-token-0123456789",))
    assert "secret-token-0123456789" not in repr(settings)


@pytest.mark.parametrize(
    "origins",
    [
        ("*",),
        ("https://www.news.example",),
        ("http://localhost:3000", "https://m.news.example:8443", "http://[::1]:8080"),
    ],
)
def test_cors_origins_are_taken(origins: tuple[str, ...]) -> None:
    assert Settings.from_env({"RANKER_CORS_ORIGINS": ",".join(origins)}).cors_origins == origins
