"""deploy/nginx: a real nginx, with the repository's micro-cache config, in front of a live
ranker. Lists are cached for ranker's max-age and revalidated with its ETag (304s for a list
that did not change), writes and everything else pass through, and a cached list is served
while ranker is down.

Skipped, with the reason, where nginx is not installed (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from benchmarks.nginx import nginx_conf, render
from ranker.app import create_app
from ranker.config import Settings
from tests.conftest import FakeClock

NGINX = shutil.which("nginx")
# Writes through a proxy are not from this host, to ranker: they need a token.
TOKEN = "nginx-test-token-0123456789abcdef"

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def nginx_in_front(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """Start nginx in front of a ranker on a given port; returns its base URL."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(ranker_port: int) -> str:
        assert NGINX is not None
        port = free_port()
        included = tmp_path / "ranker.conf"
        included.write_text(render(f"127.0.0.1:{ranker_port}", port, tmp_path / "cache"))
        conf = tmp_path / "nginx.conf"
        conf.write_text(nginx_conf(tmp_path, included, single_process=True))
        check = subprocess.run([NGINX, "-t", "-c", str(conf)], capture_output=True, check=False)
        assert check.returncode == 0, check.stderr.decode()
        processes.append(subprocess.Popen([NGINX, "-c", str(conf)], stderr=subprocess.DEVNULL))
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}"
            subprocess.run(["sleep", "0.05"], check=True)
        raise AssertionError("nginx did not start: " + (tmp_path / "error.log").read_text())

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def ranker_server(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> AsyncIterator[TestServer]:
    # No stale-while-revalidate: an expired list is revalidated before it is answered, so
    # the test sees what each revalidation returned.
    settings = make_settings(stale_while_revalidate_s=0, write_tokens=(TOKEN,))
    server = TestServer(create_app(settings, clock=clock), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str | None, bytes]:
    async with session.get(url) as response:
        return response.status, response.headers.get("X-Cache-Status"), await response.read()


async def test_lists_are_cached_and_revalidated_with_304s(
    ranker_server: TestServer, nginx_in_front: Callable[[int], str]
) -> None:
    base = nginx_in_front(ranker_server.port or 0)
    list_url = f"{base}/v1/rankings/sports?limit=5"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/v1/events",
            json=[{"article_id": "a", "section": "sports"}],
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as posted:
            assert posted.status == 200
            assert "X-Cache-Status" not in posted.headers  # writes pass through
        status, cache, first = await get(session, list_url)
        assert (status, cache) == (200, "MISS")
        status, cache, again = await get(session, list_url)
        assert (status, cache, again) == (200, "HIT", first)
        # Past ranker's max-age (1 s): nginx asks again with the ETag; the list shows the
        # same, so ranker answers 304 and nginx serves what it had.
        statuses = set()
        for _ in range(3):
            await asyncio.sleep(1.2)
            status, cache, body = await get(session, list_url)
            assert (status, body) == (200, first)
            statuses.add(cache)
        assert "REVALIDATED" in statuses
        # The HTML fragment and the catalog are cached the same way.
        for path in ("/v1/rankings/sports.html?limit=5", "/v1/rankings"):
            await get(session, base + path)
            assert (await get(session, base + path))[1] == "HIT"
        # Neither health nor metrics nor the page are.
        for path in ("/healthz", "/metrics", "/"):
            status, cache, _ = await get(session, base + path)
            assert (status, cache) == (200, None), path


async def test_a_cached_list_is_served_while_ranker_is_down(
    ranker_server: TestServer, nginx_in_front: Callable[[int], str]
) -> None:
    base = nginx_in_front(ranker_server.port or 0)
    list_url = f"{base}/v1/rankings/all"
    async with aiohttp.ClientSession() as session:
        status, _, first = await get(session, list_url)
        assert status == 200
        await ranker_server.close()
        # Past its max-age (nginx counts whole seconds, so up to a second more): only
        # stale-if-error serves it now.
        await asyncio.sleep(2.2)
        status, cache, body = await get(session, list_url)
        assert (status, cache, body) == (200, "STALE", first)
        # A list never cached has nothing to fall back on.
        status, _, _ = await get(session, f"{base}/v1/rankings/world")
        assert status == 502
