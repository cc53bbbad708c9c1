"""End to end: the real Prometheus scrapes a running exporter on 127.0.0.1 and answers PromQL about it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporters.config import ExporterConfig
from exporters.server import Exporter
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import FIXTURES, H100_X8, KERNEL_LOGS, wait_for

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    log = tmp_path / "kern.log"
    log.write_bytes((KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes())
    config = ExporterConfig(
        listen_address="127.0.0.1:0",
        path_procfs=str(FIXTURES / "procfs"),
        path_sysfs=str(FIXTURES / "sysfs"),
        xid_kernel_log=str(log),
    )
    running = Exporter(config, nvml=FakeNvml.from_capture(H100_X8)).start()
    yield running
    running.stop()


@pytest.fixture
def prometheus(tmp_path: Path, exporter: Exporter) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: fleetscope-exporter\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{exporter.port}']\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["data"]["result"]
    except OSError:
        return []  # Prometheus still starting


def test_prometheus_scrapes_the_exporter(prometheus: str) -> None:
    wait_for(lambda: bool(query(prometheus, 'up{job="fleetscope-exporter"} == 1')), timeout=60, interval=0.5)
    success = {
        r["metric"]["collector"]: r["value"][1]
        for r in query(prometheus, "fleetscope_scrape_collector_success")
    }
    assert success == {"host": "1", "gpu": "1", "xid": "1"}
    temperatures = query(prometheus, "fleetscope_gpu_temperature_celsius")
    assert len(temperatures) == 8
    joined = query(
        prometheus,
        'fleetscope_gpu_temperature_celsius * on (gpu) group_left (model) fleetscope_gpu_info{gpu="0"}',
    )
    assert joined[0]["metric"]["model"] == "NVIDIA H100 80GB HBM3" and joined[0]["value"][1] == "30"
    wait_for(
        lambda: bool(query(prometheus, 'fleetscope_gpu_xid_errors_total{gpu="0000:0a:00.0",xid="45"} == 8')),
        timeout=30,
        interval=0.5,
    )
