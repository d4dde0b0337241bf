"""The deployment files against the service they deploy.

Every metric an alert rule or a dashboard panel names is one a running ranker exports; a real
Prometheus (Debian's ``prometheus`` package) scrapes a running ranker and counts the views it
was sent; the image, the compose stack and the Kubernetes manifests agree on user, port and
health endpoints. promtool, hadolint and kubernetes-validate run in .ci/run.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout

from ranker import config
from ranker.app import create_app
from ranker.config import ConfigError, Settings
from ranker.runtime.embedded import free_port
from tests.conftest import Client

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "ranker.json"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"

JSON = {"Content-Type": "application/json"}

# Series Prometheus records itself for every target; alerts may use them, the dashboard not.
PROMETHEUS_SERIES = frozenset({"up"})

# The series names a metric family of each type is queried by, after its `# TYPE` name
# (prometheus_client already writes counters' TYPE lines as `name_total`).
SERIES_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}

# ---------------------------------------------------------------------------------------------
# Metric names in PromQL
# ---------------------------------------------------------------------------------------------

PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan"}
)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
RANGE = re.compile(r"\[[^\[\]]*\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*[A-Za-z_]\w*\s*\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label
    matchers, ranges, grouping clauses, functions, keywords and numbers are taken out."""
    expr = STRING.sub('""', expr)
    expr = LABEL_MATCHERS.sub(" ", expr)
    expr = RANGE.sub(" ", expr)
    expr = GROUPING.sub(" ", expr)
    names = set()
    for match in IDENTIFIER.finditer(expr):
        name, start = match.group(), match.start()
        if start > 0 and (expr[start - 1].isalnum() or expr[start - 1] in "._$"):
            continue  # the tail of a number (1e3, 5m), or a Grafana variable
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function
        if name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def test_metric_names_finds_the_selected_metrics_only() -> None:
    expr = """
        histogram_quantile(0.99, sum by (route, le) (rate(
            ranker_http_request_duration_seconds_bucket{route="/v1/rankings/{section}",
                                                        instance=~"$instance"}[$__rate_interval])))
        / on() group_left() (sum(rate(ranker_events_accepted_total[5m] offset 1h)) or vector(0))
        > bool 1e3 and absent(up{job="ranker"} == 1) unless ranker_redis_up
    """
    assert metric_names(expr) == {
        "ranker_http_request_duration_seconds_bucket",
        "ranker_events_accepted_total",
        "up",
        "ranker_redis_up",
    }


# ---------------------------------------------------------------------------------------------
# What the files name
# ---------------------------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of the dashboard."""
    board = dashboard()
    queries = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in walk_panels(board["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.match(query)
        assert match, f"variable {variable['name']}: expected label_values(...), got {query!r}"
        queries.append((f"variable ${variable['name']}", match["selector"]))
    return queries


def exported_series(exposition: str) -> tuple[set[str], set[str]]:
    """(families, series names) from Prometheus text: families by their `# TYPE` lines (there
    even before a labelled metric has a sample), series names as queries must spell them."""
    families: set[str] = set()
    series: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            families.add(family)
            series.update(family + suffix for suffix in SERIES_SUFFIXES[kind])
    sampled = {
        re.split(r"[{\s]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
    assert sampled <= series, f"samples under no TYPE line: {sorted(sampled - series)}"
    return families, series


@pytest.fixture
async def exposition(client: Client) -> str:
    """A running app's /metrics, after one request of each kind, so labelled series have
    samples too."""
    events = [
        {"article_id": "2026-11-28-election", "section": "national"},
        {"article_id": "bad id!", "section": "national"},
    ]
    assert (await client.post("/v1/events", json=events)).status == 200
    assert (await client.post("/v1/events", data=b"[", headers=JSON)).status == 400
    assert (await client.get("/v1/rankings/all")).status == 200
    assert (await client.put("/v1/articles/a-1", json={"title": "T"})).status == 200
    assert (await client.get("/v1/articles/a-1")).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


@pytest.fixture
def exported(exposition: str) -> tuple[set[str], set[str]]:
    """The metric families and series names of a running app."""
    return exported_series(exposition)


def test_metrics_pass_promtool_check_metrics(exposition: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not on PATH; .ci/run installs it (apt)")
        pytest.skip("promtool is not on PATH (apt-get install prometheus)")
    # promtool prints each naming or format problem and exits non-zero if there is any.
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout


def test_every_alert_and_panel_has_a_query() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "RankerDown",
        "RankerHighErrorRatio",
        "RankerSlowReads",
        "RankerRankingsStale",
        "RankerRedisUnreachable",
        "RankerEventsRejected",
    }
    for rule in rules:
        assert metric_names(rule["expr"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), rule["alert"]
    for where, query in dashboard_queries():
        assert metric_names(query), where


async def test_alert_rules_name_only_metrics_ranker_exports(
    exported: tuple[set[str], set[str]],
) -> None:
    families, series = exported
    unknown: dict[str, set[str]] = {}
    for rule in alert_rules():
        where = f"{rule['alert']} ({rule['labels']['severity']})"
        missing = metric_names(rule["expr"]) - series - PROMETHEUS_SERIES
        # The annotations may name a family (a histogram's own name) in prose, or a series.
        for text in rule["annotations"].values():
            missing |= set(re.findall(r"\branker_\w+", text)) - series - families
        if missing:
            unknown[where] = missing
    assert unknown == {}, f"alert rules name metrics ranker does not export: {unknown}"


async def test_dashboard_names_only_metrics_ranker_exports(
    exported: tuple[set[str], set[str]],
) -> None:
    _, series = exported
    unknown: dict[str, set[str]] = {}
    for where, query in dashboard_queries():
        missing = metric_names(query) - series
        if missing:
            unknown.setdefault(where, set()).update(missing)
    assert unknown == {}, f"dashboard queries name metrics ranker does not export: {unknown}"


def test_dashboard_shows_why_views_were_not_counted_and_editorial_changes() -> None:
    """A dedup spike once took "accepted" to 0 with nothing on the dashboard saying why."""
    board = dashboard()
    by_metric: dict[str, list[str]] = {}
    for panel in walk_panels(board["panels"]):
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                by_metric.setdefault(name, []).append(panel["title"])
    (why,) = set(by_metric["ranker_events_excluded_total"])
    # The reasons views were not counted, beside the views that were, on one panel.
    assert why in by_metric["ranker_events_rejected_total"]
    assert why in by_metric["ranker_events_accepted_total"]
    assert by_metric["ranker_editorial_changes_total"]
    exprs = [
        target["expr"]
        for panel in walk_panels(board["panels"])
        for target in panel.get("targets", [])
    ]
    assert any("ranker_events_excluded_total" in expr and "by (reason)" in expr for expr in exprs)
    assert any("ranker_editorial_changes_total" in expr and "by (action)" in expr for expr in exprs)
    # No two panels overlap.
    cells: set[tuple[int, int]] = set()
    for panel in walk_panels(board["panels"]):
        grid = panel["gridPos"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, panel["title"]
        cells |= mine


def test_dashboard_panels_use_the_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "ranker"
    ids = [panel["id"] for panel in walk_panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in walk_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


# ---------------------------------------------------------------------------------------------
# A real Prometheus scraping a running ranker
# ---------------------------------------------------------------------------------------------

DEADLINE_S = 60.0


async def eventually(
    observe: Callable[[], Awaitable[Any]],
    done: Callable[[Any], bool],
    what: str,
    log: Path,
    deadline_s: float = DEADLINE_S,
) -> Any:
    """Observe until ``done(observation)``, and return that observation; fail after the
    deadline with the last observation and Prometheus's log. Errors count as "not yet"."""
    until = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < until:
        try:
            last = await observe()
        except (TimeoutError, ClientError, OSError, KeyError, ValueError) as exc:
            last = exc
        else:
            if done(last):
                return last
        await asyncio.sleep(0.25)
    pytest.fail(
        f"{what}: not within {deadline_s:.0f} s (last seen: {last!r})\nprometheus log:\n{tail(log)}"
    )


def tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("the prometheus binary is not on PATH; .ci/run installs it (apt)")
        pytest.skip("the prometheus binary is not on PATH (apt-get install prometheus)")
    return binary


@pytest.fixture
async def prometheus(
    prometheus_binary: str, client: Client, tmp_path: Path
) -> AsyncIterator[tuple[str, Path]]:
    """A Prometheus on a free loopback port that scrapes ``client``'s app every second and
    loads the alert rules; yields its base URL and its log file."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {
                        "job_name": "ranker",
                        "static_configs": [{"targets": [f"{client.host}:{client.port}"]}],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=info",
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.mark.timeout(240)
async def test_prometheus_scrapes_the_views_ranker_counted(
    client: Client, prometheus: tuple[str, Path]
) -> None:
    base, log = prometheus
    async with ClientSession(timeout=ClientTimeout(total=10)) as http:

        async def get_json(path: str, **params: str) -> Any:
            async with http.get(f"{base}{path}", params=params) as resp:
                resp.raise_for_status()
                return await resp.json()

        async def ready() -> int:
            async with http.get(f"{base}/-/ready") as resp:
                return resp.status

        await eventually(ready, lambda status: status == 200, "Prometheus ready", log)

        sent = 0
        for batch in range(3):
            events = [
                {"article_id": f"2026-11-28-story-{batch}-{i}", "section": "sports"}
                for i in range(batch + 2)
            ] + [{"article_id": "bad id!", "section": "sports"}]
            resp = await client.post("/v1/events", json=events)
            assert resp.status == 200
            body = await resp.json()
            assert body["accepted"] == batch + 2
            sent += body["accepted"]
        assert sent == 9

        async def query(promql: str) -> list[float]:
            answer = await get_json("/api/v1/query", query=promql)
            return [float(sample["value"][1]) for sample in answer["data"]["result"]]

        for promql, want in [
            ("sum(ranker_events_accepted_total)", [sent]),
            ("sum(ranker_events_rejected_total)", [3]),
            ('up{job="ranker"}', [1]),
        ]:
            await eventually(functools.partial(query, promql), want.__eq__, promql, log)

        # The real Prometheus loads the alert rules and evaluates each without an error.
        want_rules = {rule["alert"] for rule in alert_rules()}

        async def rule_health() -> dict[str, set[str]]:
            answer = await get_json("/api/v1/rules", type="alert")
            health: dict[str, set[str]] = {}
            for group in answer["data"]["groups"]:
                for rule in group["rules"]:
                    health.setdefault(rule["name"], set()).add(rule["health"])
            return health

        def evaluated(health: dict[str, set[str]]) -> bool:
            return set(health) == want_rules and not any("unknown" in h for h in health.values())

        health = await eventually(rule_health, evaluated, "alert rules evaluated", log)
        assert all(h == {"ok"} for h in health.values()), health


# ---------------------------------------------------------------------------------------------
# The image, the compose stack and the manifests agree
# ---------------------------------------------------------------------------------------------


def k8s_documents() -> dict[str, dict[str, Any]]:
    documents = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            documents[document["kind"]] = document
    return documents


def test_image_and_manifests_agree_on_user_port_and_health_endpoints(settings: Settings) -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert re.search(r"^EXPOSE 8080$", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["ranker", "serve"\]$', dockerfile, re.M)
    assert "/healthz" in dockerfile.split("HEALTHCHECK", 1)[1]

    docs = k8s_documents()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001
    (container,) = pod["containers"]
    assert container["ports"][0]["containerPort"] == 8080
    # Readiness waits for Redis's first answer (a wrong RANKER_REDIS_URL keeps a new pod out
    # of the Service) and then no longer depends on the one Redis every replica shares: an
    # outage of it must not empty the Service, nor restart every replica (liveness), while
    # the lists each replica still holds can reach the pages.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert docs["ConfigMap"]["data"]["RANKER_HOST"] == "0.0.0.0"
    assert docs["ConfigMap"]["data"]["RANKER_PORT"] == "8080"
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8080"

    # Every path the image and the manifests probe or scrape is a route of the app.
    routes = {resource.canonical for resource in create_app(settings).router.resources()}
    assert {"/healthz", "/readyz", annotations["prometheus.io/path"]} <= routes


def test_write_tokens_come_from_secrets_not_from_the_files() -> None:
    docs = k8s_documents()
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    secret = env["RANKER_WRITE_TOKENS"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "ranker-write-tokens", "key": "RANKER_WRITE_TOKENS"}
    # Editors have a Secret of their own, which pods need not wait for.
    secret = env["RANKER_EDITOR_TOKENS"]["valueFrom"]["secretKeyRef"]
    assert secret == {
        "name": "ranker-editor-tokens",
        "key": "RANKER_EDITOR_TOKENS",
        "optional": True,
    }
    assert not {"RANKER_WRITE_TOKENS", "RANKER_EDITOR_TOKENS"} & set(docs["ConfigMap"]["data"])
    assert "Secret" not in docs  # created by hand, so no token is kept in git
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    environment = compose["services"]["ranker"]["environment"]
    # Required: with no token every write through Docker's bridge is refused anyway, so the
    # stack does not start without one.
    assert re.fullmatch(r"\$\{RANKER_WRITE_TOKENS:\?[^}]+\}", environment["RANKER_WRITE_TOKENS"])
    assert environment["RANKER_EDITOR_TOKENS"] == "${RANKER_EDITOR_TOKENS:-}"


def test_compose_values_left_unexpanded_stop_ranker_naming_the_variable() -> None:
    """A Compose that does not know a form passes it on as it is (podman-compose 1.0.3 does
    with ``${VAR:-}``): ranker must refuse it, not take it for a token."""
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    environment = compose["services"]["ranker"]["environment"]
    references = {name: value for name, value in environment.items() if "${" in str(value)}
    assert {"RANKER_WRITE_TOKENS", "RANKER_EDITOR_TOKENS"} <= references.keys()
    for name, value in references.items():
        with pytest.raises(ConfigError, match=name):
            config.from_env({name: value})


def test_compose_says_which_compose_it_needs() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    compose = yaml.safe_load(text)
    # The Compose Specification: no `version`, which Compose v2 ignores and 1.x would need.
    assert "version" not in compose
    header = text.split("\nname:", 1)[0]
    assert "Docker Compose v2" in header
    assert "podman-compose 1.0.6" in header
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = deploy_doc.split("### Docker Compose", 1)[1].split("\n### ", 1)[0]
    assert "Docker Compose v2" in section
    assert "podman-compose 1.0.6" in section


def test_compose_mounts_files_that_exist() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["ranker"]["deploy"]["replicas"] == 2
    assert (COMPOSE.parent / services["ranker"]["build"]["context"] / "Dockerfile").is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), (name, volume)
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "ranker"]
    assert job["dns_sd_configs"][0]["names"] == ["ranker"]
    assert job["dns_sd_configs"][0]["port"] == 8080


def test_the_files_say_what_is_true_of_authentication_and_health_checks() -> None:
    service = (K8S / "service.yaml").read_text(encoding="utf-8")
    assert "no authentication" not in service
    assert "RANKER_WRITE_TOKENS" in service
    assert "RANKER_EDITOR_TOKENS" in service
    # buildah and podman build OCI images by default, which have no HEALTHCHECK.
    dockerfile_header = DOCKERFILE.read_text(encoding="utf-8").split("\nFROM ", 1)[0]
    assert "--format docker" in dockerfile_header
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    image_section = deploy_doc.split("### The image", 1)[1].split("\n### ", 1)[0]
    assert "--format docker" in image_section


# ---------------------------------------------------------------------------------------------
# On a Redis Cluster: the compose profile and the Kubernetes overlay
# ---------------------------------------------------------------------------------------------

CLUSTER_ENV = DEPLOY / "cluster.env"
K8S_CLUSTER = DEPLOY / "k8s-cluster"


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {pair[0]: pair[1] for pair in pairs}


def test_the_compose_cluster_profile_joins_six_nodes_into_three_masters_with_a_replica_each() -> (
    None
):
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("redis-cluster-")}
    create = nodes.pop("redis-cluster-create")
    assert len(nodes) == 6
    (ipam,) = compose["networks"]["redis-cluster"]["ipam"]["config"]
    subnet, others = ipaddress.ip_network(ipam["subnet"]), ipaddress.ip_network(ipam["ip_range"])
    addresses = []
    for name, node in nodes.items():
        assert node["profiles"] == ["cluster"]
        assert "--cluster-enabled" in node["command"]
        assert node["volumes"] == [f"{name}-data:/data"]
        address = node["networks"]["redis-cluster"]["ipv4_address"]
        # In the subnet, and never an address Docker may give another container (a replica).
        assert ipaddress.ip_address(address) in subnet
        assert ipaddress.ip_address(address) not in others
        addresses.append(address)
    assert len(set(addresses)) == 6
    # The one-shot job joins exactly these nodes, once every one of them answers.
    script = create["command"][-1]
    assert create["profiles"] == ["cluster"]
    assert re.findall(r"(\d+\.\d+\.\d+\.\d+):6379", script.split("--cluster create", 1)[1]) == (
        addresses
    )
    assert "--cluster-replicas 1" in script
    assert set(create["depends_on"]) == set(nodes)
    # Nothing outside the profile needs the cluster: without it, the stack is as before.
    assert "profiles" not in services["ranker"]
    assert "redis-cluster" in services["ranker"]["networks"]


def test_cluster_env_puts_the_compose_ranker_on_the_profile_s_cluster() -> None:
    values = env_file(CLUSTER_ENV)
    assert values["COMPOSE_PROFILES"] == "cluster"
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    environment = compose["services"]["ranker"]["environment"]
    # What Compose makes of the ranker's Redis settings with and without these lines.
    for given, cluster in ((values, True), ({}, False)):
        env = {}
        for name in ("RANKER_REDIS_URL", "RANKER_REDIS_CLUSTER", "RANKER_SITE_SHARDS"):
            match = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", environment[name])
            assert match is not None
            assert match[1] == name
            env[name] = given.get(name, match[2])
        settings = config.from_env(env)
        assert settings.redis_cluster is cluster
        assert settings.site_shards == (3 if cluster else 1)
    seeds = values["RANKER_REDIS_URL"].split(",")
    assert {seed.split("//")[1].split(":")[0] for seed in seeds} <= set(compose["services"])


def test_the_k8s_cluster_overlay_patches_the_configmap_into_valid_settings() -> None:
    kustomization = yaml.safe_load((K8S_CLUSTER / "kustomization.yaml").read_text("utf-8"))
    assert kustomization["resources"] == ["../k8s"]
    (patch,) = kustomization["patches"]
    document = yaml.safe_load((K8S_CLUSTER / patch["path"]).read_text(encoding="utf-8"))
    base = k8s_documents()["ConfigMap"]
    assert (document["kind"], document["metadata"]["name"]) == (
        "ConfigMap",
        base["metadata"]["name"],
    )
    data = base["data"] | document["data"]
    settings = config.from_env(data)
    assert settings.redis_cluster
    assert settings.redis_wait_replicas == 1
    assert settings.site_shards == 3
    assert len(data["RANKER_REDIS_URL"].split(",")) == 3
    if shutil.which("kubectl") is not None:
        built = subprocess.run(
            ["kubectl", "kustomize", str(K8S_CLUSTER)], capture_output=True, text=True, check=True
        ).stdout
        documents = {d["kind"]: d for d in yaml.safe_load_all(built)}
        assert documents["ConfigMap"]["data"] == data
        assert set(documents) == set(k8s_documents()) - {"Kustomization"}
