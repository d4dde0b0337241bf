"""Key names: one ranking's keys share a Redis Cluster slot; prefixes keep services apart."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from ranker.config import DEFAULT_SECTIONS, SITE_WIDE
from ranker.keys import Keys


@pytest.mark.parametrize("ranking", [SITE_WIDE, *DEFAULT_SECTIONS])
def test_the_keys_of_one_ranking_share_a_cluster_slot(ranking: str) -> None:
    keys = Keys("ranker")
    names = (keys.scores(ranking), keys.decay(ranking), keys.hidden(ranking), keys.applied(ranking))
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_rankings_spread_over_slots() -> None:
    keys = Keys("ranker")
    slots = {key_slot(keys.scores(r).encode()) for r in (SITE_WIDE, *DEFAULT_SECTIONS)}
    assert len(slots) > 1


def test_every_key_starts_with_the_prefix() -> None:
    keys = Keys("news:ranker")
    names = [keys.scores("all"), keys.decay("all"), keys.article("a-1"), keys.hidden("all")]
    names += [keys.applied("all"), keys.idempotency("0f" * 16), keys.hidden_rankings()]
    assert all(name.startswith("news:ranker:") for name in names)
    assert keys.pattern() == "news:ranker:*"
