"""Properties of the article id, title and url rules (``ranker.validation``), and the agreement of
the CMS's update parser and the event parser on them, over generated input."""

from __future__ import annotations

import unicodedata
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from ranker.api.preconditions import check_article_id
from ranker.errors import InvalidArticle, InvalidArticleId
from ranker.ingest.parse import parse_events
from ranker.validation import MAX_TITLE, is_valid_url
from tests.support.articles import JSON, parse_update, update_accepted
from tests.support.strategies import (
    ID_CHARS,
    NOW,
    SECTIONS,
    any_urls,
    is_article_id,
    is_site_url,
    is_title,
    texts,
    titles,
)

# Mostly id characters, so that many candidates are ids; the rest anything at all.
id_candidates = st.text(ID_CHARS + "{}*? /\\\n%", max_size=140) | texts


def event_accepted(**fields: Any) -> bool:
    event = {"article_id": "a1", "section": "national", **fields}
    parsed = parse_events(orjson.dumps(event), JSON, None, now=NOW, sections=SECTIONS)
    return bool(parsed.views)


def id_accepted(article_id: str) -> bool:
    try:
        assert check_article_id(article_id) == article_id
    except InvalidArticleId:
        return False
    return True


@given(article_id=id_candidates | st.sampled_from([".", "..", "...", "a.", ".a"]))
def test_an_article_id_is_accepted_exactly_when_it_meets_the_rule(article_id: str) -> None:
    assert id_accepted(article_id) == is_article_id(article_id)
    assert event_accepted(article_id=article_id) == is_article_id(article_id)


@given(article_id=id_candidates)
def test_an_accepted_id_names_its_article_in_a_url_path(article_id: str) -> None:
    # What the CMS does to GET, PUT or hide the article a view named: the id as one path
    # segment. Clients normalise the path (yarl, urllib3, curl, browsers, proxies); the id
    # must come through that whole, or the article cannot be reached.
    if id_accepted(article_id):
        base = "http://ranker.example/v1/articles/"
        assert URL(base + article_id).path == "/v1/articles/" + article_id
        assert URL(base).joinpath(article_id).path == "/v1/articles/" + article_id


@given(url=any_urls)
def test_a_url_is_accepted_exactly_when_it_stays_on_the_site(url: str) -> None:
    assert update_accepted({"url": url}) == is_site_url(url)
    assert event_accepted(url=url) == is_site_url(url)


@given(
    title=titles
    | texts
    | st.text("가", min_size=MAX_TITLE - 2, max_size=MAX_TITLE + 2)
    | st.text("a\x00\x1b\n\t\x85\u202e\u2066\u200e\u200d가", min_size=1, max_size=8)
)
def test_a_title_is_accepted_whole_or_not_at_all(title: str) -> None:
    valid = is_title(title)
    assert update_accepted({"title": title}) == valid
    assert event_accepted(title=title) == valid
    if valid:
        update = parse_update(orjson.dumps({"title": title}), JSON, "utf-8")
        assert update == {"title": title}


@pytest.mark.parametrize("article_id", [".", ".."])
def test_a_dot_segment_is_not_an_article_id(article_id: str) -> None:
    # A client resolves /v1/articles/.. to /v1/: an article by that name could be counted,
    # but never read, retitled or hidden.
    with pytest.raises(InvalidArticleId):
        check_article_id(article_id)
    assert check_article_id("..." + article_id) == "..." + article_id


@pytest.mark.parametrize(
    "title",
    [
        pytest.param("a\x00b", id="nul"),
        pytest.param("\x1b[31mred", id="esc"),
        pytest.param("a\u202egnp.exe", id="right-to-left-override"),
        pytest.param("a\u2066b\u2069", id="isolate"),
        pytest.param("two\nlines", id="newline"),
        pytest.param("a\x85b", id="c1-next-line"),
    ],
)
def test_a_title_with_a_control_or_bidi_override_is_refused_by_put_and_events(title: str) -> None:
    with pytest.raises(InvalidArticle, match="bidi"):
        parse_update(orjson.dumps({"title": title}), JSON, None)
    assert not event_accepted(title=title)


@pytest.mark.parametrize(
    "title",
    ["북한, 동해상으로 탄도미사일 발사", "شكرا \u200f", "family \U0001f468\u200d\U0001f469"],
)
def test_titles_in_any_script_with_marks_and_joiners_are_taken(title: str) -> None:
    assert update_accepted({"title": title})
    assert event_accepted(title=title)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://news.example/a\u200bb", id="zero-width-space"),
        pytest.param("https://evil.example\uff0fnews.example/a", id="fullwidth-solidus-in-host"),
        pytest.param("https://\ud55c\uad6d.example/a", id="non-ascii-host"),
        pytest.param("/a\u202eb", id="bidi-override"),
        pytest.param("/a\ufeffb", id="byte-order-mark"),
    ],
)
def test_a_url_with_a_format_character_or_a_non_ascii_host_is_refused(url: str) -> None:
    assert not update_accepted({"url": url})
    assert not event_accepted(url=url)


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example/\uae30\uc0ac/1?q=\ud55c",
        "https://xn--3e0b707e.example/a",
        "/\uae30\uc0ac/1",
        "https://news.example/a\uff0fb",
    ],
)
def test_a_url_with_an_ascii_host_may_have_other_characters_in_its_path(url: str) -> None:
    assert update_accepted({"url": url})
    assert event_accepted(url=url)


def test_the_format_characters_refused_in_urls_cover_every_one_this_python_knows() -> None:
    every = (chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    format_characters = [c for c in every if unicodedata.category(c) == "Cf"]
    assert all(not is_valid_url(f"/a{c}") for c in format_characters)
