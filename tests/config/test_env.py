"""Settings read from the environment: every variable, parsing, and computed defaults."""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker import config
from ranker.config import SITE_WIDE, SLUG_RE, ConfigError, Settings


def test_every_variable_is_read() -> None:
    settings = config.from_env(
        {
            "RANKER_REDIS_URL": "redis://10.0.0.5:6380/2",
            "RANKER_HOST": "0.0.0.0",
            "RANKER_PORT": "9000",
            "RANKER_HALF_LIFE_S": "3600",
            "RANKER_SECTIONS": "news, sports ,video",
            "RANKER_SECTION_HALF_LIVES": "sports=600, all=1800",
            "RANKER_MAX_AGE_HOURS": "sports=48",
            "RANKER_WINDOWS": "hot=600, weekly = 302400",
            "RANKER_WINDOW_SECTION_HALF_LIVES": "hot:sports=300, weekly:all=604800,hot:all=900",
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
        windows={"hot": 600.0, "weekly": 302400.0},
        window_half_lives={"hot": {"sports": 300.0, "all": 900.0}, "weekly": {"all": 604800.0}},
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
    assert settings.profiles == (None, "hot", "weekly")
    assert settings.half_life_for("sports", "hot") == 300.0
    assert settings.half_life_for("news", "hot") == 600.0
    assert settings.half_life_for("all", "weekly") == 604800.0


@pytest.mark.parametrize("none", ["none", "None", " NONE "])
def test_no_named_windows_is_spelled_none(none: str) -> None:
    settings = config.from_env({"RANKER_WINDOWS": none})
    assert settings.windows == {}
    assert settings.profiles == (None,)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:s3cret@redis:6379",
        "redis://user:s3cret@redis:port/0",
        "redis://user:s3cret@redis:6379/0?socket_timeout=s3cret",
    ],
)
def test_a_bad_redis_url_is_not_echoed(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_env({"RANKER_REDIS_URL": url})
    assert "RANKER_REDIS_URL" in str(raised.value)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # As podman-compose 1.0.3 passes the Compose file's optional tokens on.
        ("RANKER_WRITE_TOKENS", "${RANKER_WRITE_TOKENS:-}"),
        ("RANKER_WRITE_TOKENS", "a-real-token-0123456789,${SECOND_TOKEN}"),
        ("RANKER_EDITOR_TOKENS", "${RANKER_EDITOR_TOKENS:-}"),
        ("RANKER_EDITOR_TOKENS", "desk:${DESK_TOKEN}"),
        ("RANKER_REDIS_URL", "redis://:${REDIS_PASSWORD}@redis:6379/0"),
        ("RANKER_SECTIONS", "${SECTIONS}"),
    ],
)
def test_an_unexpanded_variable_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable) as raised:
        config.from_env({variable: value})
    assert "unexpanded" in str(raised.value)
    assert "a-real-token" not in str(raised.value)


def test_a_token_that_is_a_variable_reference_is_no_token() -> None:
    with pytest.raises(ConfigError, match=r"RANKER_WRITE_TOKENS.*unexpanded"):
        Settings(write_tokens=("${RANKER_WRITE_TOKENS:-}",))
    with pytest.raises(ConfigError, match=r"RANKER_EDITOR_TOKENS.*unexpanded"):
        Settings(editor_tokens={"desk": "${RANKER_EDITOR_TOKENS:-}"})


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
    config.from_env(env)
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
        config.from_env({variable: value})
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
    settings = config.from_env(
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
    settings = config.from_env({"RANKER_PORT": str(port), "RANKER_HALF_LIFE_S": repr(half_life)})
    assert (settings.port, settings.half_life_s) == (port, half_life)


@given(value=st.text(max_size=6) | st.sampled_from(["TRUE", " yes ", "Off", "0", "1", "oN"]))
def test_a_switch_is_one_of_eight_words_in_any_case(value: str) -> None:
    word, on = value.strip().lower(), ("1", "true", "yes", "on")
    try:
        access_log = config.from_env({"RANKER_ACCESS_LOG": value}).access_log
    except ConfigError:
        assert word
        assert word not in (*on, "0", "false", "no", "off")
    else:
        assert access_log == (word in on)  # an empty value is the default, off


def test_the_byte_budget_grows_to_hold_the_largest_body_unless_it_is_set() -> None:
    large = 32 * 1024 * 1024
    assert config.from_env({"RANKER_MAX_BODY_BYTES": str(large)}).max_pending_bytes == large
    with pytest.raises(ConfigError, match=r"^RANKER_MAX_PENDING_BYTES"):
        config.from_env(
            {"RANKER_MAX_BODY_BYTES": str(large), "RANKER_MAX_PENDING_BYTES": str(large - 1)}
        )


def test_a_clients_share_is_half_the_byte_budget_unless_it_is_set() -> None:
    budget = {"RANKER_MAX_PENDING_BYTES": str(32 * 1024 * 1024)}
    assert config.from_env(budget).client_max_pending_bytes == 16 * 1024 * 1024
    large = {"RANKER_MAX_BODY_BYTES": str(48 * 1024 * 1024)}
    assert config.from_env(large).client_max_pending_bytes == 24 * 1024 * 1024
    both = {**budget, "RANKER_CLIENT_MAX_PENDING_BYTES": "65536"}
    assert config.from_env(both).client_max_pending_bytes == 65536


def test_the_burst_grows_to_hold_the_largest_batch_unless_it_is_set() -> None:
    settings = config.from_env({"RANKER_MAX_BATCH_EVENTS": "50000"})
    assert settings.client_burst_events == 50_000


def test_ingest_limits_are_read_from_the_environment() -> None:
    settings = config.from_env(
        {
            "RANKER_REQUEST_TIMEOUT_S": "2.5",
            "RANKER_IDEMPOTENCY_WINDOW_S": "3600",
            "RANKER_DEDUP_WINDOW_S": "600",
            "RANKER_MAX_PENDING_BYTES": "8388608",
            "RANKER_CLIENT_MAX_PENDING_BYTES": "2097152",
            "RANKER_HEADER_TIMEOUT_S": "2.5",
            "RANKER_MAX_CONNECTIONS": "2000",
            "RANKER_MAX_BATCH_EVENTS": "500",
            "RANKER_CLIENT_EVENTS_PER_S": "12.5",
            "RANKER_CLIENT_BURST_EVENTS": "600",
        }
    )
    assert settings.request_timeout_s == 2.5
    assert settings.idempotency_window_s == 3600
    assert settings.dedup_window_s == 600
    assert settings.max_pending_bytes == 8 * 1024 * 1024
    assert settings.client_max_pending_bytes == 2 * 1024 * 1024
    assert settings.header_timeout_s == 2.5
    assert settings.max_connections == 2000
    assert settings.max_batch_events == 500
    assert settings.client_events_per_s == 12.5
    assert settings.client_burst_events == 600


def test_editor_tokens_are_name_token_pairs() -> None:
    settings = config.from_env(
        {
            "RANKER_EDITOR_TOKENS": (
                " desk:editor-token-0123456789, kim.j@news:x:y-token-abcdefghij ,"
            ),
            "RANKER_AUDIT_MAX_ENTRIES": "5000",
        }
    )
    # Split at the first colon: a token may hold one, a name may not.
    assert settings.editor_tokens == {
        "desk": "editor-token-0123456789",
        "kim.j@news": "x:y-token-abcdefghij",
    }
    assert settings.audit_max_entries == 5000
    assert "editor-token-0123456789" not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("editor-token-0123456789", "entry 1 is not of the form editor:token"),
        (":editor-token-0123456789", "entry 1 is not of the form editor:token"),
        ("desk:", "entry 1 is not of the form editor:token"),
        ("a:editor-token-0123456789,a:other-token-0123456789", "editor 'a' is given twice"),
        ("a b:editor-token-0123456789", "editor name 'a b' must be"),
        ("a:short", "token 1 of 1 must be"),
        ("a:editor-token-0123456789,b:editor-token-0123456789", "two editors share a token"),
    ],
)
def test_bad_editor_tokens_are_named_and_not_echoed(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"RANKER_EDITOR_TOKENS: {message}") as raised:
        config.from_env({"RANKER_EDITOR_TOKENS": raw})
    assert "editor-token-0123456789" not in str(raised.value)


@pytest.mark.parametrize("raw", ["999", "10000001", "many"])
def test_a_bad_audit_size_is_an_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="RANKER_AUDIT_MAX_ENTRIES"):
        config.from_env({"RANKER_AUDIT_MAX_ENTRIES": raw})


def test_metadata_from_events_is_kept_for_days_or_for_ever() -> None:
    assert config.from_env({}).event_metadata_ttl_s == 3 * 86_400
    assert config.from_env({"RANKER_EVENT_METADATA_TTL_S": "0"}).event_metadata_ttl_s == 0
    settings = config.from_env({"RANKER_EVENT_METADATA_TTL_S": "86400"})
    assert settings.event_metadata_ttl_s == 86_400


@pytest.mark.parametrize("raw", ["59", "3599", "31536001", "-1", "a week"])
def test_a_bad_metadata_lifetime_is_an_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="RANKER_EVENT_METADATA_TTL_S"):
        config.from_env({"RANKER_EVENT_METADATA_TTL_S": raw})
