"""What one flush applies: the views of its requests summed into one amount per (ranking,
article), the keyed requests' kept apart, and how each ranking's script call is made of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import exp2
from operator import itemgetter
from typing import Any

from .config import SITE_WIDE, Settings
from .events import View

Increments = Mapping[str, Mapping[str, float]]
"""ranking -> article id -> sum of weight * 2**((ts - reference_ts) / half_life)."""


@dataclass(frozen=True, slots=True)
class KeyedBatch:
    """The views of one request sent with an ``Idempotency-Key``: counted at most once per
    ranking, however often they are applied, for ``idempotency_window_s``."""

    token: str
    increments: Increments
    # The answer to give a retry of the request, kept once the batch is applied.
    record: str


@dataclass(frozen=True, slots=True)
class FlushPlan:
    """One flush's worth of work, already coalesced: one amount per (ranking, article) for the
    requests without a key, one set of amounts per keyed request."""

    reference_ts: float
    increments: Increments
    # article id -> (title, url) to set where the article has none yet
    metadata: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # section -> views of it in this flush, for the metrics once it is applied
    views_by_section: Mapping[str, int] = field(default_factory=dict)
    keyed: Sequence[KeyedBatch] = ()

    def rankings(self) -> set[str]:
        """Every ranking this flush writes to."""
        names = set(self.increments)
        for batch in self.keyed:
            names.update(batch.increments)
        return names


def plan_flush(
    batches: Iterable[Sequence[View]],
    metadata: dict[str, tuple[str | None, str | None]],
    settings: Settings,
    keyed: Sequence[tuple[str, str, Sequence[View]]] = (),
) -> FlushPlan:
    """Sum the views of a flush into one amount per (ranking, article): the view lists of its
    requests without a key together, and each keyed request's own, as (token, record, views).

    Amounts are relative to the newest view's time, so every exponent is at most zero and no
    amount can overflow; the script scales them to the ranking's landmark.
    """
    batches = [views for views in batches if views]
    keyed = [request for request in keyed if request[2]]
    every_list = (*batches, *(views for _, _, views in keyed))
    reference_ts = max(max(map(itemgetter(2), views)) for views in every_list)
    increments, views_by_section = _sum_views(batches, reference_ts, settings)
    keyed_batches = []
    for token, record, views in keyed:
        amounts, counts = _sum_views((views,), reference_ts, settings)
        keyed_batches.append(KeyedBatch(token, amounts, record))
        for section, count in counts.items():
            views_by_section[section] = views_by_section.get(section, 0) + count
    return FlushPlan(reference_ts, increments, metadata, views_by_section, keyed_batches)


def _sum_views(
    batches: Iterable[Sequence[View]], reference_ts: float, settings: Settings
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Amounts per ranking and article, and views per section. The inner loop runs once per
    event, the hottest code of ingest after parsing: lookups are hoisted, and a view's worth is
    computed once when its section decays like the site-wide ranking."""
    site_half_life = settings.half_life_for(SITE_WIDE)
    site: dict[str, float] = {}
    # section -> [its amounts, its half-life, its view count]
    targets: dict[str, list[Any]] = {}
    for views in batches:
        for article_id, section, ts, weight in views:
            target = targets.get(section)
            if target is None:
                target = targets[section] = [{}, settings.half_life_for(section), 0]
            amounts, half_life, _ = target
            target[2] += 1
            amount = weight * exp2((ts - reference_ts) / half_life)
            amounts[article_id] = amounts.get(article_id, 0.0) + amount
            if half_life != site_half_life:
                amount = weight * exp2((ts - reference_ts) / site_half_life)
            site[article_id] = site.get(article_id, 0.0) + amount
    increments = {section: amounts for section, (amounts, _, _) in targets.items()}
    if site:
        increments[SITE_WIDE] = site
    views_by_section = {section: count for section, (_, _, count) in targets.items()}
    return increments, views_by_section


def script_call(
    plan: FlushPlan, ranking: str, skip: set[str]
) -> tuple[list[str], dict[str, float]]:
    """One ranking's script call: the tokens of the keyed batches it carries (all but
    ``skip``; a token twice in a flush counts once), and its amounts, those batches' and the
    unkeyed ones' summed."""
    amounts = dict(plan.increments.get(ranking, {}))
    tokens: list[str] = []
    for batch in plan.keyed:
        share = batch.increments.get(ranking)
        if share is None or batch.token in skip or batch.token in tokens:
            continue
        tokens.append(batch.token)
        for article_id, amount in share.items():
            amounts[article_id] = amounts.get(article_id, 0.0) + amount
    return tokens, amounts
