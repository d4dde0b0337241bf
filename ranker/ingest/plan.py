"""What one flush applies: the views of its requests summed into one amount per (profile,
ranking, article), the keyed requests' kept apart, and how each ranking's script call is made of
them. A profile is the default one or a named window: the same views, another half-life."""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import exp2
from operator import itemgetter
from typing import Any

from ranker.config import SITE_WIDE, Settings

from .parse import View
from .slices import SLICE_S, Slices, run_at_once, run_in_slices

CHUNK = 512
"""Views summed between two readings of the clock, when a plan lets other work run."""

Increments = Mapping[str, Mapping[str, float]]
"""ranking -> article id -> sum of weight * 2**((ts - reference_ts) / half_life)."""

WindowIncrements = Mapping[str, Increments]
"""window name -> that window's increments, at its half-lives."""

Terms = tuple[tuple[float, dict[str, float]], ...]
"""A section's amounts being summed in a flush, one dict per half-life."""


@dataclass(frozen=True, slots=True)
class KeyedBatch:
    """The views of one request sent with an ``Idempotency-Key``: counted at most once per
    ranking, however often they are applied, for ``idempotency_window_s``."""

    token: str
    increments: Increments
    # The answer to give a retry of the request, kept once the batch is applied.
    record: str
    windows: WindowIncrements = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FlushPlan:
    """One flush's worth of work, already coalesced: one amount per (ranking, article) for the
    requests without a key, one set of amounts per keyed request; ``increments`` for the
    default profile, ``windows`` for each named window."""

    reference_ts: float
    increments: Increments
    # article id -> (title, url) to set where the article has none yet
    metadata: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # section -> views of it in this flush, for the metrics once it is applied
    views_by_section: Mapping[str, int] = field(default_factory=dict)
    keyed: Sequence[KeyedBatch] = ()
    windows: WindowIncrements = field(default_factory=dict)

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
    amount can overflow; the script scales them to the ranking's landmark. Each profile (the
    default one, each window) has its own amounts, at its own half-life.
    """
    return run_at_once(_planning(batches, metadata, settings, keyed, math.inf))


async def plan_flush_yielding(
    batches: Iterable[Sequence[View]],
    metadata: dict[str, tuple[str | None, str | None]],
    settings: Settings,
    keyed: Sequence[tuple[str, str, Sequence[View]]] = (),
    *,
    slice_s: float = SLICE_S,
) -> FlushPlan:
    """:func:`plan_flush`, letting the event loop run other requests every ``slice_s`` of work:
    a flush of 25,000 views takes 15-25 ms to sum, which no list read should wait for."""
    return await run_in_slices(_planning(batches, metadata, settings, keyed, slice_s))


def _planning(
    batches: Iterable[Sequence[View]],
    metadata: dict[str, tuple[str | None, str | None]],
    settings: Settings,
    keyed: Sequence[tuple[str, str, Sequence[View]]],
    slice_s: float,
) -> Generator[None, None, FlushPlan]:
    """The plan, as steps of about ``slice_s`` of work each (one, with math.inf)."""
    batches = [views for views in batches if views]
    keyed = [request for request in keyed if request[2]]
    every_list = (*batches, *(views for _, _, views in keyed))
    reference_ts = max(max(map(itemgetter(2), views)) for views in every_list)
    clock = Slices(slice_s)
    increments, windows, views_by_section = yield from _sum_views(
        batches, reference_ts, settings, clock
    )
    keyed_batches = []
    for token, record, views in keyed:
        amounts, window_amounts, counts = yield from _sum_views(
            (views,), reference_ts, settings, clock
        )
        keyed_batches.append(KeyedBatch(token, amounts, record, window_amounts))
        for section, count in counts.items():
            views_by_section[section] = views_by_section.get(section, 0) + count
    return FlushPlan(reference_ts, increments, metadata, views_by_section, keyed_batches, windows)


def _sum_views(
    batches: Iterable[Sequence[View]], reference_ts: float, settings: Settings, clock: Slices
) -> Generator[
    None,
    None,
    tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]], dict[str, int]],
]:
    """Amounts per ranking and article for the default profile and for each window, and views
    per section. The inner loop runs once per event, the hottest code of ingest after parsing:
    lookups are hoisted, and a view's worth is computed and added once per distinct half-life
    among the profiles of its section and of the site-wide ranking. The site-wide amounts are
    the sections' summed afterwards: once per (section, article), not once per view."""
    profiles = settings.profiles
    site_half_lives = {settings.half_life_for(SITE_WIDE, window) for window in profiles}
    # section -> [its terms: (half-life, the section's amounts at it), its view count]
    targets: dict[str, list[Any]] = {}
    for whole in batches:
        # A chunk at a time, the clock read between them: once per view would cost the loop.
        for start in range(0, len(whole), CHUNK):
            if clock.up():
                yield
            views = whole[start : start + CHUNK] if len(whole) > CHUNK else whole
            for article_id, section, ts, weight in views:
                target = targets.get(section)
                if target is None:
                    half_lives = {settings.half_life_for(section, w) for w in profiles}
                    terms: Terms = tuple((h, {}) for h in sorted(half_lives | site_half_lives))
                    target = targets[section] = [terms, 0]
                target[1] += 1
                age = ts - reference_ts
                for half_life, amounts in target[0]:
                    amounts[article_id] = amounts.get(article_id, 0.0) + weight * exp2(
                        age / half_life
                    )
    views_by_section = {section: count for section, (_, count) in targets.items()}
    # section -> half-life -> the section's amounts at it
    by_half_life = {section: dict(terms) for section, (terms, _) in targets.items()}
    site: dict[float, dict[str, float]] = {}
    for half_life in site_half_lives:
        summed = site[half_life] = {}
        for own in by_half_life.values():
            for article_id, amount in own[half_life].items():
                summed[article_id] = summed.get(article_id, 0.0) + amount
    by_profile: list[dict[str, dict[str, float]]] = []
    for window in profiles:
        increments = {
            section: own[settings.half_life_for(section, window)]
            for section, own in by_half_life.items()
        }
        site_amounts = site[settings.half_life_for(SITE_WIDE, window)]
        if site_amounts:
            increments[SITE_WIDE] = site_amounts
        by_profile.append(increments)
    windows = dict(zip(settings.windows, by_profile[1:], strict=True))
    return by_profile[0], windows, views_by_section


def script_call(
    plan: FlushPlan, ranking: str, skip: set[str], window: str | None = None
) -> tuple[list[str], dict[str, float]]:
    """One ranking's script call in one profile (None: the default one): the tokens of the
    keyed batches it carries (all but ``skip``; a token twice in a flush counts once), and its
    amounts, those batches' and the unkeyed ones' summed. The tokens are the same in every
    profile: a batch feeds them all."""
    source = plan.increments if window is None else plan.windows.get(window, {})
    amounts = dict(source.get(ranking, {}))
    tokens: list[str] = []
    for batch in plan.keyed:
        share = batch.increments.get(ranking)
        if share is None or batch.token in skip or batch.token in tokens:
            continue
        tokens.append(batch.token)
        if window is not None:
            share = batch.windows.get(window, {}).get(ranking, {})
        for article_id, amount in share.items():
            amounts[article_id] = amounts.get(article_id, 0.0) + amount
    return tokens, amounts


def ranking_call(
    plan: FlushPlan, ranking: str, skip: set[str], profiles: Sequence[str | None]
) -> tuple[list[str], list[dict[str, float]]]:
    """One ranking's script call in all its ``profiles`` at once: the tokens it carries (see
    :func:`script_call`) and the amounts of each profile, in the order given."""
    tokens: list[str] = []
    amounts = []
    for window in profiles:
        tokens, profile_amounts = script_call(plan, ranking, skip, window)
        amounts.append(profile_amounts)
    return tokens, amounts
