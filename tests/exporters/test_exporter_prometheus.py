"""End to end: the real Prometheus scrapes a running exporter on 127.0.0.1 and answers PromQL about it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetscope.exporters.server import Exporter
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_X8, KERNEL_LOGS, running_exporter, wait_for
from tests.servers import prometheus_server, promql

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    log = tmp_path / "kern.log"
    log.write_bytes((KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes())
    with running_exporter(log, FakeNvml.from_capture(H100_X8)) as running:
        yield running


@pytest.fixture
def prometheus(tmp_path: Path, exporter: Exporter) -> Iterator[str]:
    with prometheus_server(tmp_path, [f"127.0.0.1:{exporter.port}"]) as base:
        yield base


def test_prometheus_scrapes_the_exporter(prometheus: str) -> None:
    wait_for(lambda: bool(promql(prometheus, 'up{job="fleetscope-exporter"} == 1')), timeout=60, interval=0.5)
    success = {
        r["metric"]["collector"]: r["value"][1]
        for r in promql(prometheus, "fleetscope_scrape_collector_success")
    }
    # no InfiniBand in the fixture sysfs; host, GPU (fake NVML) and the Xid watcher are read
    assert (success["host"], success["gpu"], success["xid"], success["infiniband"]) == ("1", "1", "1", "0")
    temperatures = promql(prometheus, "fleetscope_gpu_temperature_celsius")
    assert len(temperatures) == 8
    joined = promql(
        prometheus,
        'fleetscope_gpu_temperature_celsius * on (gpu) group_left (model) fleetscope_gpu_info{gpu="0"}',
    )
    assert joined[0]["metric"]["model"] == "NVIDIA H100 80GB HBM3" and joined[0]["value"][1] == "30"
    wait_for(
        lambda: bool(promql(prometheus, 'fleetscope_gpu_xid_errors_total{gpu="0000:0a:00.0",xid="45"} == 8')),
        timeout=30,
        interval=0.5,
    )
