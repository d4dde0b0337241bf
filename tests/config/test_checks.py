"""The checks on each setting's value, and errors that name the variable."""

from __future__ import annotations

import pytest

from ranker import config
from ranker.config import ConfigError, Settings


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
        ("RANKER_WINDOWS", "trending"),
        ("RANKER_WINDOWS", "Trending=1800"),
        ("RANKER_WINDOWS", "default=1800"),
        ("RANKER_WINDOWS", "trending=0.5"),
        ("RANKER_WINDOWS", "trending=nan"),
        ("RANKER_WINDOWS", "trending=1800,trending=900"),
        ("RANKER_WINDOWS", ",".join(f"w{n}=60" for n in range(9))),
        ("RANKER_WINDOW_SECTION_HALF_LIVES", "sports=60"),
        ("RANKER_WINDOW_SECTION_HALF_LIVES", "weekly:sports=60"),
        ("RANKER_WINDOW_SECTION_HALF_LIVES", "default:sports=60"),
        ("RANKER_WINDOW_SECTION_HALF_LIVES", "trending:nowhere=60"),
        ("RANKER_WINDOW_SECTION_HALF_LIVES", "trending:sports=0"),
        ("RANKER_WINDOW_SECTION_HALF_LIVES", "trending:sports=60,trending:sports=90"),
        ("RANKER_MAX_AGE_HOURS", "sports"),
        ("RANKER_MAX_AGE_HOURS", "nowhere=24"),
        ("RANKER_MAX_AGE_HOURS", "sports=0"),
        ("RANKER_MAX_AGE_HOURS", "sports=-24"),
        ("RANKER_MAX_AGE_HOURS", "sports=nan"),
        ("RANKER_MAX_AGE_HOURS", "sports=a day"),
        ("RANKER_MAX_AGE_HOURS", "sports=24,sports=48"),
        ("RANKER_REDIS_URL", "localhost:6379"),
        ("RANKER_REDIS_URL", "redis://h:p1,h:p2/0"),
        ("RANKER_REDIS_URL", "redis://127.0.0.1:notaport/0"),
        ("RANKER_REDIS_URL", "redis://127.0.0.1:0/0"),
        ("RANKER_REDIS_URL", "redis://127.0.0.1:6379/zero"),
        ("RANKER_REDIS_URL", "redis://127.0.0.1:6379/0?socket_timeout=soon"),
        ("RANKER_REDIS_URL", "redis://127.0.0.1:6379/0?no_such_option=1"),
        ("RANKER_REDIS_URL", "unix://"),
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
        ("RANKER_MOVEMENT_INTERVAL_S", "0.5"),
        ("RANKER_MOVEMENT_INTERVAL_S", "700000"),
        ("RANKER_MOVEMENT_INTERVAL_S", "inf"),
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
        config.from_env({variable: value})


def test_the_movement_interval_defaults_to_an_hour_and_is_no_shorter_than_a_refresh() -> None:
    assert config.from_env({}).movement_interval_s == 3600.0
    with pytest.raises(ConfigError, match="RANKER_MOVEMENT_INTERVAL_S"):
        config.from_env({"RANKER_REFRESH_INTERVAL_S": "60", "RANKER_MOVEMENT_INTERVAL_S": "30"})


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
        config.from_env({"RANKER_WRITE_TOKENS": f"good-token-0123456789,{token}"})
    assert token.strip() not in str(raised.value)
    assert "good-token-0123456789" not in str(raised.value)


def test_tokens_of_16_and_256_visible_characters_are_taken() -> None:
    tokens = ("!#$%&'()*+-./:;<", "~" * 256)
    assert config.from_env({"RANKER_WRITE_TOKENS": ",".join(tokens)}).write_tokens == tokens


@pytest.mark.parametrize(
    "origins",
    [
        ("*",),
        ("https://www.news.example",),
        ("http://localhost:3000", "https://m.news.example:8443", "http://[::1]:8080"),
    ],
)
def test_cors_origins_are_taken(origins: tuple[str, ...]) -> None:
    assert config.from_env({"RANKER_CORS_ORIGINS": ",".join(origins)}).cors_origins == origins


@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("RANKER_REQUEST_TIMEOUT_S", {"RANKER_REQUEST_TIMEOUT_S": "soon"}),
        ("RANKER_REQUEST_TIMEOUT_S", {"RANKER_REQUEST_TIMEOUT_S": "0"}),
        ("RANKER_REQUEST_TIMEOUT_S", {"RANKER_REQUEST_TIMEOUT_S": "0.05"}),
        ("RANKER_REQUEST_TIMEOUT_S", {"RANKER_REQUEST_TIMEOUT_S": "601"}),
        ("RANKER_REQUEST_TIMEOUT_S", {"RANKER_REQUEST_TIMEOUT_S": "inf"}),
        ("RANKER_IDEMPOTENCY_WINDOW_S", {"RANKER_IDEMPOTENCY_WINDOW_S": "a day"}),
        ("RANKER_IDEMPOTENCY_WINDOW_S", {"RANKER_IDEMPOTENCY_WINDOW_S": "86400.5"}),
        ("RANKER_IDEMPOTENCY_WINDOW_S", {"RANKER_IDEMPOTENCY_WINDOW_S": "59"}),
        ("RANKER_IDEMPOTENCY_WINDOW_S", {"RANKER_IDEMPOTENCY_WINDOW_S": "2592001"}),
        ("RANKER_DEDUP_WINDOW_S", {"RANKER_DEDUP_WINDOW_S": "half an hour"}),
        ("RANKER_DEDUP_WINDOW_S", {"RANKER_DEDUP_WINDOW_S": "1800.5"}),
        ("RANKER_DEDUP_WINDOW_S", {"RANKER_DEDUP_WINDOW_S": "-1"}),
        ("RANKER_DEDUP_WINDOW_S", {"RANKER_DEDUP_WINDOW_S": "604801"}),
        ("RANKER_MAX_PENDING_BYTES", {"RANKER_MAX_PENDING_BYTES": "lots"}),
        ("RANKER_MAX_PENDING_BYTES", {"RANKER_MAX_PENDING_BYTES": "1048575"}),
        (
            "RANKER_MAX_PENDING_BYTES",
            {"RANKER_MAX_PENDING_BYTES": "2000000", "RANKER_MAX_BODY_BYTES": "4000000"},
        ),
        ("RANKER_CLIENT_MAX_PENDING_BYTES", {"RANKER_CLIENT_MAX_PENDING_BYTES": "half"}),
        ("RANKER_CLIENT_MAX_PENDING_BYTES", {"RANKER_CLIENT_MAX_PENDING_BYTES": "1023"}),
        ("RANKER_HEADER_TIMEOUT_S", {"RANKER_HEADER_TIMEOUT_S": "soon"}),
        ("RANKER_HEADER_TIMEOUT_S", {"RANKER_HEADER_TIMEOUT_S": "0.05"}),
        ("RANKER_HEADER_TIMEOUT_S", {"RANKER_HEADER_TIMEOUT_S": "601"}),
        ("RANKER_HEADER_TIMEOUT_S", {"RANKER_HEADER_TIMEOUT_S": "inf"}),
        ("RANKER_MAX_CONNECTIONS", {"RANKER_MAX_CONNECTIONS": "many"}),
        ("RANKER_MAX_CONNECTIONS", {"RANKER_MAX_CONNECTIONS": "15"}),
        ("RANKER_MAX_CONNECTIONS", {"RANKER_MAX_CONNECTIONS": "1000001"}),
        ("RANKER_MAX_BATCH_EVENTS", {"RANKER_MAX_BATCH_EVENTS": "many"}),
        ("RANKER_MAX_BATCH_EVENTS", {"RANKER_MAX_BATCH_EVENTS": "0"}),
        ("RANKER_MAX_BATCH_EVENTS", {"RANKER_MAX_BATCH_EVENTS": "1000001"}),
        ("RANKER_CLIENT_EVENTS_PER_S", {"RANKER_CLIENT_EVENTS_PER_S": "fast"}),
        ("RANKER_CLIENT_EVENTS_PER_S", {"RANKER_CLIENT_EVENTS_PER_S": "-1"}),
        ("RANKER_CLIENT_EVENTS_PER_S", {"RANKER_CLIENT_EVENTS_PER_S": "nan"}),
        ("RANKER_CLIENT_BURST_EVENTS", {"RANKER_CLIENT_BURST_EVENTS": "plenty"}),
        ("RANKER_CLIENT_BURST_EVENTS", {"RANKER_CLIENT_BURST_EVENTS": "9999"}),
        (
            "RANKER_CLIENT_BURST_EVENTS",
            {"RANKER_CLIENT_BURST_EVENTS": "20000", "RANKER_MAX_BATCH_EVENTS": "30000"},
        ),
    ],
)
def test_a_bad_ingest_limit_is_an_error_naming_its_variable(
    variable: str, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_env(env)
    assert str(raised.value).startswith(f"{variable}:")


@pytest.mark.parametrize(
    "env",
    [
        {"RANKER_REQUEST_TIMEOUT_S": "0.1", "RANKER_IDEMPOTENCY_WINDOW_S": "60"},
        {"RANKER_REQUEST_TIMEOUT_S": "600", "RANKER_IDEMPOTENCY_WINDOW_S": "2592000"},
        {"RANKER_DEDUP_WINDOW_S": "0"},  # off: every view counts
        {"RANKER_DEDUP_WINDOW_S": "604800"},
        {"RANKER_MAX_BODY_BYTES": "4096", "RANKER_MAX_PENDING_BYTES": "4096"},
        {"RANKER_CLIENT_MAX_PENDING_BYTES": "1024", "RANKER_MAX_CONNECTIONS": "16"},
        {"RANKER_HEADER_TIMEOUT_S": "0.1", "RANKER_MAX_CONNECTIONS": "1000000"},
        {"RANKER_HEADER_TIMEOUT_S": "600"},
        {"RANKER_MAX_BATCH_EVENTS": "1", "RANKER_CLIENT_BURST_EVENTS": "1"},
        {"RANKER_MAX_BATCH_EVENTS": "1000000", "RANKER_CLIENT_BURST_EVENTS": "1000000"},
    ],
)
def test_ingest_limits_at_their_bounds_are_taken(env: dict[str, str]) -> None:
    config.from_env(env)


def test_an_override_for_a_window_that_is_not_configured_names_the_configured_ones() -> None:
    with pytest.raises(ConfigError, match=r"RANKER_WINDOW_SECTION_HALF_LIVES.*trending, popular"):
        Settings(window_half_lives={"weekly": {"sports": 60.0}})
    with pytest.raises(ConfigError, match=r"RANKER_WINDOW_SECTION_HALF_LIVES.*configured: none"):
        Settings(windows={}, window_half_lives={"trending": {"sports": 60.0}})


def test_cluster_mode_takes_any_number_of_nodes() -> None:
    nodes = "redis://:pw@10.0.0.1:7000, redis://10.0.0.2:7001/0"
    settings = config.from_env({"RANKER_REDIS_CLUSTER": "true", "RANKER_REDIS_URL": nodes})
    assert settings.redis_urls == ("redis://:pw@10.0.0.1:7000", "redis://10.0.0.2:7001/0")
    single = config.from_env({"RANKER_REDIS_URL": "redis://10.0.0.1:7000/2"})
    assert single.redis_urls == ("redis://10.0.0.1:7000/2",)


def test_cluster_mode_takes_wait_replicas() -> None:
    env = {
        "RANKER_REDIS_CLUSTER": "true",
        "RANKER_REDIS_URL": "redis://10.0.0.1:7000",
        "RANKER_REDIS_WAIT_REPLICAS": "1",
    }
    assert config.from_env(env).redis_wait_replicas == 1


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RANKER_REDIS_URL": "redis://a:1,redis://b:2"}, "RANKER_REDIS_CLUSTER=true"),
        ({"RANKER_REDIS_CLUSTER": "true"}, "RANKER_REDIS_URL"),
        ({"RANKER_REDIS_CLUSTER": "true", "RANKER_REDIS_URL": "unix:///tmp/r.sock"}, "unix"),
        ({"RANKER_REDIS_CLUSTER": "true", "RANKER_REDIS_URL": "redis://a:1/3"}, "database 0"),
        ({"RANKER_REDIS_CLUSTER": "true", "RANKER_REDIS_URL": "redis://a:1,b:2"}, "redis://"),
    ],
)
def test_a_cluster_setting_that_cannot_work_is_an_error(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        config.from_env(env)
