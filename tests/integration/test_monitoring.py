"""Static checks of the deployment and monitoring files: docker-compose.yml, the Dockerfile,
monitoring/prometheus.yml, the alert rules and the Grafana provisioning and dashboard.

Docker need not run: the compose file is validated against the Compose specification's JSON
schema, the proxy's command line is parsed by the real CLI and config loader, and every PromQL
expression in the alerts and the dashboard is parsed and checked against the metrics the proxy's
real registry exposes (names, label matchers, grouping labels, and the labels that legends and
alert annotations print). When promtool is installed, it checks the files and runs the alert
rules' unit tests (monitoring/alerts_test.yml) too.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import promql_parser as pp
import pytest
import yaml

ROOT = Path(__file__).parents[2]
# The Compose specification's JSON schema: the shared copy beside the project when there is
# one, else the copy kept with the tests (tests/data, from github.com/compose-spec/compose-spec).
COMPOSE_SPEC_PLACES = (ROOT.parent / "shared" / "compose-spec.json",
                       ROOT / "tests" / "data" / "compose-spec.json")
COMPOSE_SPEC = next((p for p in COMPOSE_SPEC_PLACES if p.is_file()), COMPOSE_SPEC_PLACES[-1])
MONITORING = ROOT / "monitoring"
GRAFANA = MONITORING / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# Labels Prometheus attaches to every scraped series (no relabelling in prometheus.yml).
TARGET_LABELS = frozenset({"job", "instance"})
# Series that are not the proxy's but that the rules may use, with their labels.
OTHER_SERIES = {"up": TARGET_LABELS}
# The metrics contract of issue 4 that the dashboard and alerts rely on: name → labels.
CONTRACT = {
    "redquorum_read_repairs_total": {"replica", "reason"},
    "redquorum_stale_reads_total": set(),
    "redquorum_replica_staleness_versions_bucket": {"replica", "le"},
    "redquorum_replica_staleness_seconds_bucket": {"replica", "le"},
    "redquorum_siblings_bucket": {"le"},
    "redquorum_sibling_soft_limit_exceeded_total": set(),
    "redquorum_replica_up": {"replica"},
    "redquorum_requests_total": {"command", "result"},
    "redquorum_request_duration_seconds_bucket": {"command", "le"},
    "redquorum_replica_request_duration_seconds_bucket": {"replica", "le"},
    "redquorum_quorum_failures_total": {"op"},
    "redquorum_client_connections": set(),
    "redquorum_build_info": {"version", "n", "w", "r", "mode"},
    "redquorum_replica_lag_seconds": {"replica"},
    "redquorum_antientropy_rounds_total": set(),
    "redquorum_antientropy_keys_repaired_total": {"replica"},
    "redquorum_antientropy_segments_diverged": {"replica"},
    "redquorum_antientropy_last_success_timestamp_seconds": set(),
    "redquorum_antientropy_round_duration_seconds": set(),
    "redquorum_pbs_consistency_probability": {"t_ms"},
    "redquorum_pbs_t_visibility_seconds": {"quantile"},
    "redquorum_hint_oldest_age_seconds": {"replica"},
    "redquorum_hint_delivery_delay_seconds_bucket": {"replica", "le"},
}
ALERTED = {  # each must be used by at least one alert
    "redquorum_replica_up", "redquorum_replica_lag_seconds", "redquorum_quorum_failures_total",
    "redquorum_stale_reads_total", "redquorum_sibling_soft_limit_exceeded_total",
    "redquorum_antientropy_last_success_timestamp_seconds", "redquorum_hint_oldest_age_seconds",
}


def load_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


# -- the proxy's real metrics ------------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exposed_metrics() -> dict[str, frozenset[str] | None]:
    """Every sample name the proxy's registry can expose → its labels (None: not knowable)."""
    from prometheus_client.metrics import MetricWrapperBase
    from redquorum.config import Replica, build
    from redquorum.metrics import Metrics

    metrics = Metrics(build({}, [Replica(f"r{i}", "127.0.0.1", i) for i in (1, 2, 3)]))
    # A labelled metric has no samples until a label value is used: read the declared label
    # names from the metric objects, and from the families of custom (scrape-time) collectors.
    declared: dict[str, frozenset[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            declared[value._name] = frozenset(getattr(value, "_labelnames", ()))
    names: dict[str, frozenset[str] | None] = {}
    for family in metrics.registry.collect():
        labels: frozenset[str] | None = declared.get(family.name)
        if labels is None and getattr(family, "_labelnames", None) is not None:
            labels = frozenset(family._labelnames)
        if labels is None and family.samples:
            labels = frozenset().union(*(s.labels for s in family.samples)) - {"le", "quantile"}
        for suffix in SUFFIXES.get(family.type, ("",)):
            extra = {"le"} if suffix == "_bucket" else {"quantile"} if family.type == "summary" and not suffix \
                else set()
            names[family.name + suffix] = None if labels is None else labels | extra
    return names


@pytest.fixture(scope="module")
def exposed() -> dict[str, frozenset[str] | None]:
    return exposed_metrics()


def test_registry_exposes_the_metrics_contract(exposed: dict[str, frozenset[str] | None]) -> None:
    missing = sorted(CONTRACT.keys() - exposed.keys())
    assert not missing, f"missing from redquorum.metrics: {missing}"
    wrong = {name: sorted(exposed[name] or ["unknown"]) for name, labels in CONTRACT.items()
             if exposed[name] != labels}
    assert not wrong, f"labels differ from the metrics contract: {wrong}"


# -- PromQL ------------------------------------------------------------------------------------

def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's interval macros and template variables with values PromQL parses."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def alert_expressions() -> Iterator[tuple[str, str, set[str]]]:
    """(where, PromQL, labels printed by the alert's annotations)"""
    for group in load_yaml(MONITORING / "alerts.yml")["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            printed = {m for text in (rule.get("annotations") or {}).values()
                       for m in re.findall(r"\$labels\.(\w+)", str(text))}
            yield f"alerts.yml:{name}", rule["expr"], printed


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels") or [])


def dashboard_expressions() -> Iterator[tuple[str, str, set[str]]]:
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in walk_panels(board.get("panels", [])):
            for target in panel.get("targets") or []:
                if "expr" in target:
                    printed = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat") or ""))
                    yield f"{path.name}:{panel.get('title')}:{target.get('refId')}", target["expr"], printed
        for var in board.get("templating", {}).get("list", []):
            query = var.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
            if m:
                yield f"{path.name}:${var['name']}", m.group(1), {m.group(2)}
            elif var.get("type") == "query":
                yield f"{path.name}:${var['name']}", query, set()


EXPRESSIONS = list(alert_expressions()) + list(dashboard_expressions())


def _scalar(node: Any) -> bool:
    """A number, or a function whose value is a scalar (time() - a vector keeps its labels)."""
    kind = type(node).__name__
    return kind == "NumberLiteral" or (kind == "Call" and node.func.name in ("time", "scalar", "pi"))


class Labels:
    """Which labels a PromQL expression's result carries, given the metrics' labels."""

    def __init__(self, exposed: dict[str, frozenset[str] | None]) -> None:
        self.exposed = exposed
        self.problems: list[str] = []

    def selector(self, node: Any) -> frozenset[str] | None:
        name = node.name or ""
        if name.startswith("redquorum_"):
            if name not in self.exposed:
                self.problems.append(f"{name} is not exposed by proxy.metrics.Metrics")
                return None
            labels = self.exposed[name]
        else:
            labels = OTHER_SERIES.get(name)
        if labels is None:
            return None
        labels = labels | TARGET_LABELS
        for matcher in node.matchers.matchers:
            if matcher.name != "__name__" and matcher.name not in labels:
                self.problems.append(f"{name} has no label {matcher.name!r} (it has {sorted(labels)})")
        return labels

    def need(self, wanted: list[str] | None, have: frozenset[str] | None, where: str) -> None:
        missing = set(wanted or ()) - (have or set())
        if have is not None and missing:
            self.problems.append(f"{where} uses {sorted(missing)}, not among {sorted(have)}")

    def of(self, node: Any) -> frozenset[str] | None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            return self.selector(node)
        if kind == "MatrixSelector":
            return self.selector(node.vector_selector)
        if kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
            return self.of(node.expr)
        if kind in ("NumberLiteral", "StringLiteral"):
            return frozenset()
        if kind == "AggregateExpr":
            inner = self.of(node.expr)
            if node.param is not None and not isinstance(node.param, int | float | str):
                self.of(node.param)
            op = str(node.op)
            if node.modifier is None:
                return frozenset() if op not in ("topk", "bottomk", "limitk", "limit_ratio") else inner
            labels = frozenset(node.modifier.labels)
            self.need(node.modifier.labels, inner, f"{op} by/without")
            if op in ("topk", "bottomk", "limitk", "limit_ratio"):
                return inner
            if node.modifier.type == pp.AggModifierType.Without:
                return None if inner is None else inner - labels
            return labels
        if kind == "Call":
            args = [self.of(a) for a in node.args]
            vectors = [a for a, raw in zip(args, node.args, strict=True)
                       if type(raw).__name__ not in ("NumberLiteral", "StringLiteral")]
            name = node.func.name
            if name == "histogram_quantile":
                return None if args[1] is None else args[1] - {"le"}
            if name in ("label_replace", "label_join"):
                return None if args[0] is None else args[0] | {node.args[1].val}
            if name in ("absent", "absent_over_time", "time", "vector", "scalar", "pi"):
                return frozenset()
            return vectors[0] if vectors else frozenset()
        if kind == "BinaryExpr":
            lhs, rhs = self.of(node.lhs), self.of(node.rhs)
            if _scalar(node.lhs):
                return rhs
            if _scalar(node.rhs):
                return lhs
            mod = node.modifier
            if mod is not None and mod.matching is not None:
                if mod.matching.type == pp.LabelModifierType.Include:
                    self.need(mod.matching.labels, lhs, "on(...) left side")
                    self.need(mod.matching.labels, rhs, "on(...) right side")
            op = str(node.op)
            if op == "or" and type(node.rhs).__name__ == "Call" and node.rhs.func.name == "vector":
                return lhs  # a constant fallback for an empty result: the series are the lhs's
            if op == "or":
                return None if lhs is None or rhs is None else lhs & rhs
            if mod is not None and mod.card == pp.VectorMatchCardinality.ManyToOne:
                self.need(mod.group_labels, rhs, "group_left(...)")
                return None if lhs is None else lhs | set(mod.group_labels or ())
            if mod is not None and mod.card == pp.VectorMatchCardinality.OneToMany:
                self.need(mod.group_labels, lhs, "group_right(...)")
                return None if rhs is None else rhs | set(mod.group_labels or ())
            return lhs
        return None


@pytest.mark.parametrize(("where", "expr", "printed"), EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_metric_names_exist_in_the_proxy_registry(where: str, expr: str, printed: set[str],
                                                  exposed: dict[str, frozenset[str] | None]) -> None:
    used = set(re.findall(r"\bredquorum_\w+", expr))
    unknown = sorted(used - exposed.keys())
    assert not unknown, f"{where} uses metrics that proxy.metrics does not expose: {unknown}"


@pytest.mark.parametrize(("where", "expr", "printed"), EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_promql_parses_and_its_labels_exist(where: str, expr: str, printed: set[str],
                                            exposed: dict[str, frozenset[str] | None]) -> None:
    try:
        node = pp.parse(grafana_to_promql(expr))
    except Exception as exc:  # the parser raises a plain ValueError/RuntimeError with the position
        pytest.fail(f"{where}: PromQL does not parse: {exc}\n{expr}")
    labels = Labels(exposed)
    result = labels.of(node)
    assert not labels.problems, f"{where}: " + "; ".join(labels.problems)
    if result is not None:
        missing = printed - result
        assert not missing, (f"{where} prints {sorted(missing)} (legend or annotation), but the result "
                             f"only has {sorted(result)}")


# -- Prometheus (and what it needs from docker-compose.yml) ---------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "docker-compose.yml")


def resolve_defaults(text: str) -> str:
    """Compose interpolation with an empty environment: ${X:-default} → default, $$ → $."""
    text = re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", text)
    return text.replace("$$", "$")


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path → host path of a service's bind mounts (short syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def test_prometheus_config(compose: dict[str, Any]) -> None:
    config = load_yaml(MONITORING / "prometheus.yml")
    mounts = bind_mounts(compose["services"]["prometheus"])
    config_target = "/etc/prometheus/prometheus.yml"  # where the image reads its config
    assert mounts.get(config_target) == (MONITORING / "prometheus.yml").resolve(), \
        f"monitoring/prometheus.yml is not mounted at {config_target}"
    for rule_file in config["rule_files"]:
        local = MONITORING / rule_file
        assert local.is_file(), f"rule file {rule_file} is not in monitoring/"
        in_container = str(PurePosixPath(config_target).parent / rule_file)
        assert mounts.get(in_container) == local.resolve(), f"{rule_file} is not mounted at {in_container}"

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"]), "duplicate job names"
    targets = [t for sc in jobs["redquorum"]["static_configs"] for t in sc["targets"]]
    metrics_port = proxy_config(compose).metrics_listen[1]
    assert f"proxy:{metrics_port}" in targets, "Prometheus must scrape the proxy's --metrics-listen port"
    assert jobs["redquorum"].get("metrics_path", "/metrics") == "/metrics"


def test_alert_rules_are_well_formed() -> None:
    groups = load_yaml(MONITORING / "alerts.yml")["groups"]
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)), "duplicate group names"
    alerts = [rule for g in groups for rule in g["rules"]]
    alert_names = [r["alert"] for r in alerts]
    assert len(alert_names) == len(set(alert_names)), "duplicate alert names"
    used: set[str] = set()
    for rule in alerts:
        where = rule["alert"]
        assert re.fullmatch(r"Redquorum[A-Za-z]+", where), f"{where}: alert names are RedquorumCamelCase"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), where
        assert {"summary", "description"} <= rule["annotations"].keys(), where
        if "for" in rule:
            assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), f"{where}: bad duration {rule['for']}"
        used |= set(re.findall(r"\bredquorum_\w+", rule["expr"]))
    assert ALERTED <= used, f"no alert on {sorted(ALERTED - used)}"

    tests = load_yaml(MONITORING / "alerts_test.yml")
    assert tests["rule_files"] == ["alerts.yml"]
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])}
    assert tested <= set(alert_names), f"alerts_test.yml tests unknown alerts {sorted(tested - set(alert_names))}"


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: apt install prometheus)")
@pytest.mark.parametrize("args", [["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                                  ["test", "rules", "alerts_test.yml"]], ids=lambda a: " ".join(a[:2]))
def test_promtool(args: list[str]) -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- Grafana -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def datasource() -> dict[str, Any]:
    sources = [ds for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
               for ds in load_yaml(path)["datasources"]]
    prometheus = [ds for ds in sources if ds["type"] == "prometheus"]
    assert len(prometheus) == 1, "exactly one provisioned Prometheus datasource"
    return prometheus[0]


def datasource_refs(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield where, value
            yield from datasource_refs(value, f"{where}/{node.get('title', key)}")
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item, where)


def test_grafana_datasource_points_at_prometheus(datasource: dict[str, Any], compose: dict[str, Any]) -> None:
    m = re.fullmatch(r"http://([\w.-]+):(\d+)/?", datasource["url"])
    assert m, datasource["url"]
    assert m.group(1) in compose["services"], f"{m.group(1)} is not a compose service"
    assert m.group(1) == "prometheus" and m.group(2) == "9090"
    assert datasource.get("uid"), "the datasource needs a fixed uid for the dashboards to refer to"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard(path: Path, datasource: dict[str, Any]) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    panels = list(walk_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"

    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, f"{panel['title']} is off the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] != "row":
            assert panel.get("targets"), f"{panel['title']} has no query"

    refs = list(datasource_refs(board))
    assert refs
    for where, ref in refs:
        if isinstance(ref, dict) and ref.get("type") == "grafana":
            continue  # the built-in annotations
        assert isinstance(ref, dict) and ref.get("type") == "prometheus", f"{where}: {ref!r}"
        assert ref.get("uid") == datasource["uid"], f"{where}: datasource uid {ref.get('uid')!r}"

    text = json.dumps(board)
    variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
    used = set(re.findall(r"\$\{?([A-Za-z]\w*)", text))
    assert used <= variables, f"undefined template variables {sorted(used - variables)}"
    shown = set(re.findall(r"\bredquorum_\w+", text))
    assert CONTRACT.keys() <= shown, f"the dashboard does not show {sorted(CONTRACT.keys() - shown)}"
    types = {p["type"] for p in panels}
    assert "heatmap" in types, "staleness distributions are shown as heatmaps"


def test_grafana_provisioning_matches_compose(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts.get("/etc/grafana/provisioning") == (GRAFANA / "provisioning").resolve()
    providers = [p for path in sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yml"))
                 for p in load_yaml(path)["providers"]]
    assert providers
    for provider in providers:
        assert mounts.get(provider["options"]["path"]) == (GRAFANA / "dashboards").resolve(), \
            f"provider {provider['name']} reads {provider['options']['path']}, which is not the dashboards mount"
    env = {k: resolve_defaults(str(v)) for k, v in grafana["environment"].items()}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = PurePosixPath(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    host = mounts.get(str(home.parent))
    assert host is not None and (host / home.name).is_file(), f"home dashboard {home} is not mounted"


# -- docker-compose.yml --------------------------------------------------------------------------

def test_compose_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SPEC.read_text())
    # The spec names draft 07 without the trailing "#", which jsonschema does not recognise.
    if "draft-07" in schema.get("$schema", ""):
        validator_class = jsonschema.Draft7Validator
    else:
        validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def test_compose_interpolation_is_valid(compose: dict[str, Any]) -> None:
    valid = re.compile(r"\$\$|\$\{[A-Za-z_]\w*(?::?[-?+][^}]*)?\}|\$[A-Za-z_]\w*")
    for text in strings(compose):
        rest = valid.sub("", text)
        assert "$" not in rest, f"invalid Compose interpolation (write $$ for a literal $) in {text!r}"


def proxy_config(compose: dict[str, Any]) -> Any:
    """The proxy service's command line, parsed by the real CLI and config loader."""
    from redquorum.cli import parser
    from redquorum.config import load

    service = compose["services"]["proxy"]
    argv = [resolve_defaults(str(a)) for a in service["command"]]
    try:
        args = parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"redquorum rejects the proxy service's command {argv} (see the captured stderr)")
    assert args.command == "serve"
    environ = {k: resolve_defaults(str(v)) for k, v in (service.get("environment") or {}).items()}
    return load({k: v for k, v in vars(args).items() if v is not None}, environ=environ)


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    replicas = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("redis:7")}
    assert len(replicas) == 3
    for name, service in replicas.items():
        command = [str(a) for a in service["command"]]
        assert command[0] == "redis-server"
        assert command[command.index("--appendonly") + 1] == "yes", f"{name} must use the AOF"
        assert command[command.index("--maxmemory-policy") + 1] == "noeviction", name
        assert "healthcheck" in service, name
        assert any(v.endswith(":/data") for v in service["volumes"]), f"{name} keeps /data in a volume"

    proxy = services["proxy"]
    assert proxy["build"] in (".", {"context": "."})
    config = proxy_config(compose)
    assert config.listen == ("0.0.0.0", 6379)
    assert config.metrics_listen == ("0.0.0.0", 9379)
    assert (config.n, config.w, config.r) == (3, 2, 2)
    assert {r.id: (r.host, r.port) for r in config.replicas} == {name: (name, 6379) for name in replicas}, \
        "replicas are reached by service name, and their ids are the service names"
    for name in replicas:
        assert proxy["depends_on"][name]["condition"] == "service_healthy"
    published = {resolve_defaults(p).split(":")[-1] for p in proxy["ports"]}
    assert {"6379", "9379"} <= published

    healthcheck = [resolve_defaults(str(a)) for a in proxy["healthcheck"]["test"]]
    assert healthcheck[:3] == ["CMD", "python", "-c"]
    compile(healthcheck[3], "healthcheck", "exec")

    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name} uses the undeclared volume {source}"


# -- Dockerfile ----------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/"))
               for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_installs_the_project() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    entrypoint = [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["redquorum"]
    assert any(kw == "RUN" and re.search(r"\bpip install \.(\s|$)", rest) for kw, rest in instructions)

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    readme = pyproject["project"].get("readme")
    folders = {folder.split("/")[0] for folder in pyproject["tool"]["setuptools"]["package-dir"].values()}
    needed = {"pyproject.toml", *folders, *([readme] if readme else [])}
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied: set[str] = set()
    for kw, rest in instructions:
        if kw == "COPY" and "--from" not in rest:
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            for source in sources:
                source = source.rstrip("/").removeprefix("./")
                copied.add(source)
                assert not dockerignored(source, patterns), f".dockerignore excludes {source}"
                # The readme is pyproject's own requirement (the layout has it at the root).
                assert source == readme or (ROOT / source).exists(), f"COPY {source}: no such file"
    assert needed <= copied, f"the image lacks {sorted(needed - copied)}"
