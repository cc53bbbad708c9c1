"""The deployment files a user starts from: docker-compose.yml and the Prometheus/Grafana configs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian) not installed")
def test_docker_compose_file_is_valid_and_complete() -> None:
    out = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "gpu", "config"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    services = yaml.safe_load(out)["services"]
    assert set(services) == {"prometheus", "grafana", "neo4j", "collector", "console", "exporter"}
    assert services["neo4j"]["image"].startswith("neo4j:5")
    # docker-compose v1 prints short-syntax entries ("host:container:mode") as strings.
    grafana_mounts = [v.split(":")[1] for v in services["grafana"]["volumes"]]
    assert "/etc/grafana/provisioning/datasources" in grafana_mounts
    # The exporter is the only service meant to be reached from other hosts (Prometheus scrapes it).
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip = port.split(":")[0] if isinstance(port, str) else port.get("host_ip")
            published_to_all = host_ip in (None, "0.0.0.0")
            assert name == "exporter" or not published_to_all, f"{name} publishes {port} on all interfaces"


def test_grafana_datasource_points_at_the_compose_prometheus() -> None:
    provisioning = yaml.safe_load(
        (ROOT / "fleetscope/dashboards/provisioning/datasources/prometheus.yml").read_text()
    )
    (source,) = provisioning["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
def test_prometheus_config_passes_promtool() -> None:
    subprocess.run(
        ["promtool", "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
        capture_output=True,
        check=True,
    )
