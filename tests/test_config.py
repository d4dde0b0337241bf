"""Settings from the environment: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.config import DEFAULT_SECTIONS, SITE_WIDE, SLUG_RE, ConfigError, Settings


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
            "RANKER_MAX_AGE_HOURS": "sports=48",
            "RANKER_KEY_PREFIX": "site-a:ranker",
            "RANKER_MAX_BODY_BYTES": "2048",
            "RANKER_MAX_SET_SIZE": "1000",
            "RANKER_MAX_PENDING_EVENTS": "5000",
            "RANKER_PRUNE_BELOW": "0.001",
            "RANKER_MOVEMENT_INTERVAL_S": "900",
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
        max_age_hours={"sports": 48.0},
        key_prefix="site-a:ranker",
        max_body_bytes=2048,
        max_set_size=1000,
        max_pending_events=5000,
        prune_below=0.001,
        movement_interval_s=900.0,
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


def test_maximum_ages_are_per_ranking_in_hours_and_off_by_default() -> None:
    assert Settings.from_env({}).max_age_hours == {}
    assert all(Settings.from_env({}).max_age_s_for(name) is None for name in Settings().rankings)
    settings = Settings.from_env({"RANKER_MAX_AGE_HOURS": "sports=48, national=24,all=1.5"})
    assert settings.max_age_hours == {"sports": 48.0, "national": 24.0, "all": 1.5}
    assert settings.max_age_s_for("sports") == 48 * 3600.0
    assert settings.max_age_s_for("all") == 5400.0
    assert settings.max_age_s_for("world") is None


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
        ("RANKER_MAX_AGE_HOURS", "sports"),
        ("RANKER_MAX_AGE_HOURS", "nowhere=24"),
        ("RANKER_MAX_AGE_HOURS", "sports=0"),
        ("RANKER_MAX_AGE_HOURS", "sports=-24"),
        ("RANKER_MAX_AGE_HOURS", "sports=nan"),
        ("RANKER_MAX_AGE_HOURS", "sports=a day"),
        ("RANKER_MAX_AGE_HOURS", "sports=24,sports=48"),
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
        Settings.from_env({variable: value})


def test_the_movement_interval_defaults_to_an_hour_and_is_no_shorter_than_a_refresh() -> None:
    assert Settings.from_env({}).movement_interval_s == 3600.0
    with pytest.raises(ConfigError, match="RANKER_MOVEMENT_INTERVAL_S"):
        Settings.from_env({"RANKER_REFRESH_INTERVAL_S": "60", "RANKER_MOVEMENT_INTERVAL_S": "30"})


def test_a_bad_redis_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"RANKER_REDIS_URL": "http://user:s3cret@redis:6379"})
    assert "s3cret" not in str(raised.value)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


class ReadLog(Mapping[str, str]):
    """An empty environment that notes every variable asked for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __getitem__(self, name: str) -> str:
        self.names.append(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables() -> list[str]:
    env = ReadLog()
    Settings.from_env(env)
    return env.names


VARIABLES = variables()
env_values = (
    st.text(max_size=20)
    | st.text(string.digits + "-+.e_ ", max_size=8)
    | st.sampled_from(["0", "1", "-1", "1e400", "nan", "inf", "true", "sports=60", "ALL", ","])
    | st.integers(-(10**20), 10**20).map(str)
)


def test_every_setting_is_read_from_the_environment() -> None:
    fields = {f.name for f in dataclasses.fields(Settings) if f.init}
    assert len(VARIABLES) == len(set(VARIABLES)) == len(fields)
    assert all(name.startswith("RANKER_") for name in VARIABLES)


@given(variable=st.sampled_from(VARIABLES), value=env_values)
def test_any_value_gives_settings_or_an_error_naming_its_variable(
    variable: str, value: str
) -> None:
    try:
        Settings.from_env({variable: value})
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith(variable)


slugs = st.from_regex(SLUG_RE, fullmatch=True).filter(lambda slug: slug != SITE_WIDE)
padding = st.sampled_from(["", " ", "\t", "  "])


@given(
    sections=st.lists(slugs, min_size=1, max_size=6, unique=True),
    pad=padding,
    half_lives=st.lists(st.floats(1.0, 1e9), min_size=7, max_size=7),
)
def test_sections_and_their_half_lives_read_back_as_written(
    sections: list[str], pad: str, half_lives: list[float]
) -> None:
    chosen = dict(zip([SITE_WIDE, *sections], half_lives, strict=False))
    settings = Settings.from_env(
        {
            "RANKER_SECTIONS": ",".join(f"{pad}{slug}{pad}" for slug in sections) + ",",
            "RANKER_SECTION_HALF_LIVES": ",".join(
                f"{k}{pad}={pad}{v!r}" for k, v in chosen.items()
            ),
        }
    )
    assert settings.sections == tuple(sections)
    assert dict(settings.section_half_lives) == chosen


@given(port=st.integers(1, 65535), half_life=st.floats(1.0, allow_infinity=False))
def test_numbers_read_back_as_written(port: int, half_life: float) -> None:
    settings = Settings.from_env({"RANKER_PORT": str(port), "RANKER_HALF_LIFE_S": repr(half_life)})
    assert (settings.port, settings.half_life_s) == (port, half_life)


@given(value=st.text(max_size=6) | st.sampled_from(["TRUE", " yes ", "Off", "0", "1", "oN"]))
def test_a_switch_is_one_of_eight_words_in_any_case(value: str) -> None:
    word, on = value.strip().lower(), ("1", "true", "yes", "on")
    try:
        access_log = Settings.from_env({"RANKER_ACCESS_LOG": value}).access_log
    except ConfigError:
        assert word
        assert word not in (*on, "0", "false", "no", "off")
    else:
        assert access_log == (word in on)  # an empty value is the default, off


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


def test_ingest_limits_default_to_the_documented_values() -> None:
    settings = Settings.from_env({})
    assert settings.request_timeout_s == 5.0
    assert settings.idempotency_window_s == 86_400
    assert settings.dedup_window_s == 1800  # a reader's repeat views count once per 30 min
    assert settings.max_pending_bytes == 16 * 1024 * 1024
    assert settings.max_batch_events == 10_000
    assert settings.client_events_per_s == 0.0  # no per-client limit
    assert settings.client_burst_events == 20_000


def test_the_byte_budget_grows_to_hold_the_largest_body_unless_it_is_set() -> None:
    large = 32 * 1024 * 1024
    assert Settings.from_env({"RANKER_MAX_BODY_BYTES": str(large)}).max_pending_bytes == large
    with pytest.raises(ConfigError, match=r"^RANKER_MAX_PENDING_BYTES"):
        Settings.from_env(
            {"RANKER_MAX_BODY_BYTES": str(large), "RANKER_MAX_PENDING_BYTES": str(large - 1)}
        )


def test_the_burst_grows_to_hold_the_largest_batch_unless_it_is_set() -> None:
    settings = Settings.from_env({"RANKER_MAX_BATCH_EVENTS": "50000"})
    assert settings.client_burst_events == 50_000


def test_ingest_limits_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "RANKER_REQUEST_TIMEOUT_S": "2.5",
            "RANKER_IDEMPOTENCY_WINDOW_S": "3600",
            "RANKER_DEDUP_WINDOW_S": "600",
            "RANKER_MAX_PENDING_BYTES": "8388608",
            "RANKER_MAX_BATCH_EVENTS": "500",
            "RANKER_CLIENT_EVENTS_PER_S": "12.5",
            "RANKER_CLIENT_BURST_EVENTS": "600",
        }
    )
    assert settings.request_timeout_s == 2.5
    assert settings.idempotency_window_s == 3600
    assert settings.dedup_window_s == 600
    assert settings.max_pending_bytes == 8 * 1024 * 1024
    assert settings.max_batch_events == 500
    assert settings.client_events_per_s == 12.5
    assert settings.client_burst_events == 600


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
        Settings.from_env(env)
    assert str(raised.value).startswith(f"{variable}:")


@pytest.mark.parametrize(
    "env",
    [
        {"RANKER_REQUEST_TIMEOUT_S": "0.1", "RANKER_IDEMPOTENCY_WINDOW_S": "60"},
        {"RANKER_REQUEST_TIMEOUT_S": "600", "RANKER_IDEMPOTENCY_WINDOW_S": "2592000"},
        {"RANKER_DEDUP_WINDOW_S": "0"},  # off: every view counts
        {"RANKER_DEDUP_WINDOW_S": "604800"},
        {"RANKER_MAX_BODY_BYTES": "4096", "RANKER_MAX_PENDING_BYTES": "4096"},
        {"RANKER_MAX_BATCH_EVENTS": "1", "RANKER_CLIENT_BURST_EVENTS": "1"},
        {"RANKER_MAX_BATCH_EVENTS": "1000000", "RANKER_CLIENT_BURST_EVENTS": "1000000"},
    ],
)
def test_ingest_limits_at_their_bounds_are_taken(env: dict[str, str]) -> None:
    Settings.from_env(env)
