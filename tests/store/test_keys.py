"""Key names: one ranking's keys share a Redis Cluster slot; prefixes keep services apart."""

from __future__ import annotations

import binascii
import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ranker.api.preconditions import check_article_id
from ranker.config import DEFAULT_SECTIONS, SITE_WIDE, SLUG_RE
from ranker.config.limits import KEY_PREFIX_RE
from ranker.errors import InvalidArticleId
from ranker.ingest.dedup import SHARDS
from ranker.store.keys import Keys
from tests.support.strategies import ID_CHARS, texts

prefixes = st.from_regex(KEY_PREFIX_RE, fullmatch=True)


@pytest.mark.parametrize("ranking", [SITE_WIDE, *DEFAULT_SECTIONS])
def test_the_keys_of_one_ranking_share_a_cluster_slot(ranking: str) -> None:
    keys = Keys("ranker")
    names = [keys.scores(ranking), keys.decay(ranking), keys.hides(ranking), keys.applied(ranking)]
    names += [keys.movement(ranking, 500_000)]
    names += [keys.published(ranking), keys.pins(ranking)]
    for window in ("trending", "popular"):
        names += [keys.scores(ranking, window), keys.decay(ranking, window)]
        names += [keys.movement(ranking, 500_000, window)]
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_the_default_profile_keeps_its_key_names_and_each_window_has_its_own() -> None:
    keys = Keys("ranker")
    # Deployed data lives under these names: they must not change.
    assert keys.scores("sports") == keys.scores("sports", None) == "ranker:{r:sports}:scores"
    assert keys.decay("sports") == "ranker:{r:sports}:decay"
    assert keys.movement("sports", 7) == "ranker:{r:sports}:movement:7"
    assert keys.scores("sports", "trending") == "ranker:{r:sports}:w:trending:scores"
    assert keys.decay("sports", "trending") == "ranker:{r:sports}:w:trending:decay"
    assert keys.movement("sports", 7, "trending") == "ranker:{r:sports}:w:trending:movement:7"
    names = {
        key(ranking, window)
        for key in (keys.scores, keys.decay)
        for ranking in ("all", "sports")
        for window in (None, "trending", "popular")
    }
    assert len(names) == 12


def test_rankings_spread_over_slots() -> None:
    keys = Keys("ranker")
    slots = {key_slot(keys.scores(r).encode()) for r in (SITE_WIDE, *DEFAULT_SECTIONS)}
    assert len(slots) > 1


def test_one_shards_reader_marks_share_a_slot_and_the_shards_spread_over_slots() -> None:
    keys = Keys("ranker")
    for shard in range(SHARDS):
        marks = {key_slot(keys.seen(shard, digest).encode()) for digest in ("0" * 32, "f" * 32)}
        assert len(marks) == 1
    shards = {key_slot(keys.seen(shard, "0" * 32).encode()) for shard in range(SHARDS)}
    assert len(shards) == SHARDS


def test_every_key_starts_with_the_prefix() -> None:
    keys = Keys("news:ranker")
    names = [keys.scores("all"), keys.decay("all"), keys.article("a-1"), keys.hides("all")]
    names += [keys.applied("all"), keys.idempotency("0f" * 16), keys.hidden_rankings()]
    names += [keys.seen(3, "0f" * 16)]
    names += [keys.movement("all", 500_000)]
    names += [keys.published("all")]
    names += [keys.scores("all", "trending"), keys.decay("all", "trending")]
    names += [keys.movement("all", 500_000, "trending")]
    assert all(name.startswith("news:ranker:") for name in names)
    assert keys.pattern() == "news:ranker:*"


@given(
    prefix=prefixes,
    article_id=st.text(ID_CHARS + "{}*?[]\\ \n", min_size=1, max_size=130) | texts,
)
def test_an_article_key_stays_under_its_prefix_and_in_no_hash_tag(
    prefix: str, article_id: str
) -> None:
    try:
        check_article_id(article_id)
    except InvalidArticleId:
        return
    key = Keys(prefix).article(article_id)
    assert key.removeprefix(f"{prefix}:article:") == article_id
    # Nothing an id holds opens a hash tag (which would pick the key's cluster slot), is a glob
    # character of SCAN, or splits a command line.
    assert not set(key) & set("{}*?[]\\")
    assert key.isascii()
    assert key.isprintable()
    assert " " not in key
    assert key_slot(key.encode()) == binascii.crc_hqx(key.encode(), 0) % REDIS_CLUSTER_HASH_SLOTS
    assert fnmatch.fnmatchcase(key, Keys(prefix).pattern())


@given(prefix=prefixes, ranking=st.from_regex(SLUG_RE, fullmatch=True))
def test_any_ranking_keeps_its_keys_in_one_slot(prefix: str, ranking: str) -> None:
    keys = Keys(prefix)
    slot = key_slot(f"r:{ranking}".encode())
    assert {key_slot(k.encode()) for k in (keys.scores(ranking), keys.decay(ranking))} == {slot}
    assert key_slot(keys.hides(ranking).encode()) == slot
    assert key_slot(keys.pins(ranking).encode()) == slot
