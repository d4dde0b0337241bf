"""The article validators (``ranker.articles``). Requests through the app are in
tests/test_views.py."""

from __future__ import annotations

import pytest

from ranker.articles import check_article_id
from ranker.errors import InvalidArticleId


@pytest.mark.parametrize("article_id", [".", ".."])
def test_a_dot_segment_is_not_an_article_id(article_id: str) -> None:
    # A client resolves /v1/articles/.. to /v1/: an article by that name could be counted,
    # but never read, retitled or hidden.
    with pytest.raises(InvalidArticleId):
        check_article_id(article_id)
    assert check_article_id("..." + article_id) == "..." + article_id
