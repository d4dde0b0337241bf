"""The documentation: the curl examples of the README and of ``docs/``, run in order as a newcomer
would against ``ranker serve``; every link between the pages; the README's size; and the settings
page against the settings declared."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from ranker.api.routes import ROUTES
from ranker.cli import SERVE_EPILOG
from ranker.config import declared
from tests.test_cli import serving

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# The order the examples run in: each page may build on the ones before (views posted before
# lists are read, an article hidden and then shown again).
PAGES = [
    README,
    DOCS / "api" / "events.md",
    DOCS / "api" / "rankings.md",
    DOCS / "api" / "articles.md",
    DOCS / "api" / "editorial.md",
    DOCS / "api" / "access.md",
    DOCS / "api" / "page.md",
    DOCS / "operations.md",
]
SH_BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
MAX_README_LINES = 400


def markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def curl_examples(page: Path | None = None) -> list[str]:
    pages = PAGES if page is None else [page]
    blocks = [block for p in pages for block in SH_BLOCK.findall(p.read_text(encoding="utf-8"))]
    return [block for block in blocks if "curl " in block]


def test_every_page_with_curl_examples_is_run() -> None:
    with_examples = {page for page in markdown_pages() if curl_examples(page)}
    assert with_examples <= set(PAGES)


def test_the_readme_is_a_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < MAX_README_LINES
    assert ".venv/bin/pytest" in text  # the test command CI runs
    assert ".venv/bin/ranker serve" in text


def test_the_readme_sets_first_the_settings_serve_help_names() -> None:
    """The README's short table and `ranker serve --help` name the same handful."""
    named_by_help = set(re.findall(r"^  (RANKER_[A-Z0-9_]+)", SERVE_EPILOG, flags=re.MULTILINE))
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Settings set first\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(RANKER_[A-Z0-9_]+)`", section, flags=re.MULTILINE)
    assert sorted(listed) == sorted(named_by_help)


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s):// and mailto: are not checked here
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), (page, target)
        if fragment and linked.suffix == ".md":
            assert fragment in anchors(linked), (page, target)


# Files the reader makes, which the docs name but the repository does not hold.
MADE_BY_THE_READER = {"deploy/.env"}
REPOSITORY_PATH = re.compile(r"`((?:ranker|tests|deploy|benchmarks|docs|\.ci)/[^`\s:]*)`")


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_the_docs_name_exists(page: Path) -> None:
    """A module or test named in prose (`ranker/ingest/parse.py`) must survive the next move."""
    for path in REPOSITORY_PATH.findall(page.read_text(encoding="utf-8")):
        if path not in MADE_BY_THE_READER:
            assert (ROOT / path).exists(), (page, path)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (outside code blocks)."""
    found, in_code = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (heading := re.match(r"#+ (.*)", line)):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


def test_the_settings_page_lists_every_declared_setting_and_no_other() -> None:
    page = (DOCS / "settings.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(RANKER_[A-Z0-9_]+)`", page, flags=re.MULTILINE))
    assert listed == {s.variable for s in declared().values()}


def json_documents(output: str) -> list[dict[str, object]]:
    """The JSON objects that open curl's output, which runs them together without newlines."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while output.startswith("{", at):
        document, at = decoder.raw_decode(output, at)
        documents.append(document)
    return documents


def test_the_docs_have_curl_examples_for_every_endpoint() -> None:
    text = "\n".join(curl_examples())
    for route in ROUTES:
        assert route.path.partition("{")[0] in text, route.path


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    "token",
    [
        # As a newcomer runs them: no token configured, so writes from this host are taken.
        pytest.param(None, id="loopback-default"),
        # With RANKER_WRITE_TOKENS set, the examples' writes must carry $RANKER_TOKEN; with
        # RANKER_EDITOR_TOKENS set, their editorial changes $RANKER_EDITOR_TOKEN.
        pytest.param("readme-example-token-0123456789", id="with-a-token"),
    ],
)
def test_the_curl_examples_work(tmp_path: Path, token: str | None) -> None:
    shell_env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("RANKER_TOKEN", "RANKER_EDITOR_TOKEN")
    }
    editor_token = None if token is None else f"editor-{token}"
    if token is not None and editor_token is not None:
        shell_env["RANKER_TOKEN"] = token
        shell_env["RANKER_EDITOR_TOKEN"] = editor_token
    # An empty RANKER_WRITE_TOKENS is as good as unset: no tokens. No refresh on the clock: the
    # ETag example's two requests must see one list, and a refresh between them would change
    # it (the README says a 304 holds within a refresh interval). This server's own writes
    # still refresh its lists early, which the last check below relies on.
    with serving(
        tmp_path / "data",
        RANKER_WRITE_TOKENS=token or "",
        RANKER_EDITOR_TOKENS="" if editor_token is None else f"desk:{editor_token}",
        RANKER_REFRESH_INTERVAL_S="3600",
    ) as base:
        for example in curl_examples():
            script = example.replace("http://localhost:8080", base)
            if "If-None-Match" in example:
                # Let the early refreshes the examples' writes set off land first (they come
                # at most 0.1 s apart): one between its two requests would change the list.
                time.sleep(0.5)
            result = subprocess.run(
                ["sh", "-ec", script],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                env=shell_env,
            )
            assert result.returncode == 0, (example, result.stderr)
            for document in json_documents(result.stdout):
                assert "error" not in document, (example, document)
            assert result.stdout.strip(), example
            if "If-None-Match" in example:
                assert result.stdout.strip() == "304", example
        # The replica that took the views refreshes its lists early: they show in moments.
        expected = {"2026-11-28-election", "2026-11-28-idol-tour", "2026-11-28-derby"}
        give_up = time.monotonic() + 20
        while True:
            ranking = subprocess.run(
                ["curl", "-s", f"{base}/v1/rankings/all?limit=10"],
                capture_output=True,
                check=True,
            )
            ids = {item["article_id"] for item in orjson.loads(ranking.stdout)["items"]}
            if ids == expected or time.monotonic() > give_up:
                break
            time.sleep(0.05)
        assert ids == expected
