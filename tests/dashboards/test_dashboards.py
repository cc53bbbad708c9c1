"""The committed Grafana dashboards: what the generator makes now, valid provisioning, real metric names."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

import fleetscope.exporters
from fleetscope.collectors.incidents import IncidentStore
from fleetscope.collectors.live import LiveCollector
from fleetscope.dashboards import GRAFANA_DIR
from fleetscope.exporters.metrics import MetricSpec
from fleetscope.exporters.registry import registrations

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "fleetscope" / "dashboards" / "rules").glob("*.yml"))
BOARDS = {path.stem: json.loads(path.read_text()) for path in sorted(GRAFANA_DIR.glob("*.json"))}
#: Series Prometheus itself adds for every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds"}
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def test_committed_dashboards_are_what_the_generator_makes() -> None:
    generate = pytest.importorskip("fleetscope.dashboards.generate", reason="needs the dashboards extra")
    made = {uid: generate.render(board) for uid, board in generate.dashboards().items()}
    committed = {path.stem: path.read_text() for path in GRAFANA_DIR.glob("*.json")}
    assert sorted(committed) == sorted(made), "run `fleetscope dashboards generate`"
    for uid, text in made.items():
        assert committed[uid] == text, f"{uid}.json is stale: run `fleetscope dashboards generate`"


def test_generate_writes_each_file_whole_and_removes_stale_ones(tmp_path: Path) -> None:
    generate = pytest.importorskip("fleetscope.dashboards.generate", reason="needs the dashboards extra")
    (tmp_path / "fleetscope-retired.json").write_text("{}")
    (tmp_path / "someone-elses.json").write_text("{}")
    written = generate.write(tmp_path)
    assert [p.name for p in written] == sorted(f"{uid}.json" for uid in BOARDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(p.name for p in written), "someone-elses.json"]
    )


def test_the_dashboard_set() -> None:
    assert sorted(BOARDS) == [
        "fleetscope-cluster",
        "fleetscope-gpu",
        "fleetscope-incidents",
        "fleetscope-interconnect",
        "fleetscope-self",
        "fleetscope-training",
    ]
    for uid, board in BOARDS.items():
        assert board["uid"] == uid and board["tags"] == ["fleetscope"]
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert (
            variables["datasource"]["type"] == "datasource"
            and variables["datasource"]["query"] == "prometheus"
        )
        [incidents] = board["annotations"]["list"]
        assert incidents["expr"] == "fleetscope_collector_open_incident_info"
        assert "{{fingerprint}}" in incidents["textFormat"] and incidents["tagKeys"] == "layer,node,gpu"
        ids = [panel["id"] for panel in board["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"] and panel["title"] and panel["description"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
    assert {"node", "gpu"} <= {v["name"] for v in BOARDS["fleetscope-gpu"]["templating"]["list"]}
    assert {"job", "node"} <= {v["name"] for v in BOARDS["fleetscope-training"]["templating"]["list"]}


def _exporter_names() -> set[str]:
    """Every sample name the exporter can serve, from the reviewed MetricSpec tables of its modules."""
    registrations()  # imports every collector module
    specs: list[MetricSpec] = []

    def walk(value: object) -> None:
        if isinstance(value, MetricSpec):
            specs.append(value)
        elif isinstance(value, tuple | list | set | frozenset):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif hasattr(value, "spec"):
            walk(value.spec)

    for module in pkgutil.iter_modules(fleetscope.exporters.__path__):
        for value in vars(importlib.import_module(f"fleetscope.exporters.{module.name}")).values():
            walk(value)
    names = set()
    for spec in specs:
        suffixes = ("_bucket", "_sum", "_count") if spec.type == "histogram" else ("",)
        names |= {spec.name + suffix for suffix in suffixes}
    return names


def _collector_names(tmp_path: Path) -> set[str]:
    registry = CollectorRegistry()
    LiveCollector([], IncidentStore(tmp_path / "incidents.db"), tmp_path / "window", registry=registry)
    # A labelled metric has no sample before its first child; prometheus_client drops a counter's _total.
    families = list(registry.collect())
    return {sample.name for family in families for sample in family.samples} | {
        family.name + ("_total" if family.type == "counter" else "") for family in families
    }


def _names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label values and function names left out)."""
    tokens = _NAME.findall(_QUOTED.sub("", re.sub(r"\{\{.*?\}\}", "", expr)))
    return {t for t in tokens if "fleetscope_" in t or t in PROMETHEUS_SERIES}


def _expressions() -> list[str]:
    found = []
    for board in BOARDS.values():
        found += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
        found += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
        found += [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    for path in RULES:
        found += [
            rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
        ]
    return found


def test_every_metric_a_dashboard_or_rule_reads_exists(tmp_path: Path) -> None:
    recorded = {
        rule["record"]
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    known = _exporter_names() | _collector_names(tmp_path) | recorded | PROMETHEUS_SERIES
    assert (
        "fleetscope_gpu_temperature_celsius" in known
        and "fleetscope_nvlink_probe_latency_seconds_bucket" in known
    )
    read = set().union(*(_names(expr) for expr in _expressions()))
    assert len(read) > 60
    assert read - known == set()


def test_a_name_the_exporter_lacks_is_caught() -> None:
    assert _names('sum by (gpu) (rate(fleetscope_gpu_temprature_celsius{gpu=~"$gpu"}[5m]))') == {
        "fleetscope_gpu_temprature_celsius"
    }
    assert _names('up{job="fleetscope-exporter"} == 0') == {"up"}
    assert _names("instance:fleetscope_gpus:count") == {"instance:fleetscope_gpus:count"}


def test_provisioning_points_grafana_at_the_committed_files() -> None:
    provider = yaml.safe_load(
        (ROOT / "fleetscope/dashboards/provisioning/dashboards/fleetscope.yml").read_text()
    )
    [entry] = provider["providers"]
    assert entry["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in volumes}
    assert mounted[entry["options"]["path"]] == "./fleetscope/dashboards/grafana"
    assert (
        mounted["/etc/grafana/provisioning/dashboards"] == "./fleetscope/dashboards/provisioning/dashboards"
    )
    datasource = yaml.safe_load(
        (ROOT / "fleetscope/dashboards/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["type"] == "prometheus"


def test_the_scrape_jobs_the_dashboards_name_are_those_docker_compose_scrapes() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    named = set().union(*(re.findall(r'\bjob="([^"]+)"', expr) for expr in _expressions()))
    assert named == {"fleetscope-exporter", "fleetscope-collector"}
    assert named <= jobs
