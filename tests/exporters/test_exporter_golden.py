"""Golden expositions: each collector's ``generate_latest()`` on fixture sources, byte for byte.

After a reviewed change to a collector, regenerate with::

    UPDATE_GOLDEN=1 PYTHONPATH=$PWD python -m pytest tests/exporters/test_exporter_golden.py -q

and review the diff of ``tests/golden/`` like code. The self metrics (durations) are not in any golden:
each golden registry holds one bare collector, not the :class:`ScrapeCollector` that times it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetscope.exporters.gpu import GpuCollector
from fleetscope.exporters.host import HostCollector
from fleetscope.exporters.infiniband import InfinibandCollector
from fleetscope.exporters.jobs import JobCollector
from fleetscope.exporters.nvlink import NvlinkCollector
from fleetscope.exporters.training import RECORD, TrainingCollector
from fleetscope.exporters.xid import XidCollector, XidWatcher
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import FIXTURES, H100_MIG, H100_X8, H200, KERNEL_LOGS, T4, wait_for

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def _host() -> bytes:
    registry = CollectorRegistry()
    registry.register(HostCollector(FIXTURES / "procfs", FIXTURES / "sysfs", ticks_per_second=100))
    return generate_latest(registry)


def _gpu(capture: Path, seconds: float) -> Callable[[], bytes]:
    def build() -> bytes:
        nvml = FakeNvml.from_capture(capture)
        nvml.advance(seconds)  # a minute of recorded power draw in the energy counter
        collector = GpuCollector(nvml, timeout=5.0)
        try:
            registry = CollectorRegistry()
            registry.register(collector)
            return generate_latest(registry)
        finally:
            collector.close()

    return build


def _xid(tmp_path: Path) -> bytes:
    log = tmp_path / "kern.log"
    log.write_bytes(b"".join(p.read_bytes() for p in sorted(KERNEL_LOGS.glob("*.log"))))
    expected_lines = log.read_bytes().count(b"\n")
    watcher = XidWatcher(str(log), poll_interval=0.05).start()
    try:
        wait_for(lambda: watcher.snapshot()[2] == expected_lines)
        registry = CollectorRegistry()
        # The GPU at 0000:0a:00.0 is known to NVML as index 0 here; the others keep their bus ids.
        registry.register(XidCollector(watcher, {"0000:0a:00.0": "0"}.get))
        return generate_latest(registry)
    finally:
        watcher.stop()


def _nvlink() -> bytes:
    nvml = FakeNvml.from_capture(H200)  # 18 links at 26.562 GB/s, fabric state Completed
    # Error counts are in no capture: one replay on link 3 is set here, the others stay NotSupported.
    nvml.set_nvlink_errors(0, 3, pynvml.NVML_NVLINK_ERROR_DL_REPLAY, 1)
    gpu = GpuCollector(nvml, timeout=5.0)
    try:
        list(gpu.collect())  # the GPU collector opens the handles the nvlink collector reads through
        registry = CollectorRegistry()
        registry.register(NvlinkCollector(gpu))
        return generate_latest(registry)
    finally:
        gpu.close()


def _jobs() -> bytes:
    gpu = GpuCollector(FakeNvml.from_capture(H100_X8), timeout=5.0)
    try:
        list(gpu.collect())  # the GPU collector learns the UUIDs the mapping files name
        registry = CollectorRegistry()
        registry.register(JobCollector(gpu, FIXTURES / "procfs", FIXTURES / "jobs"))
        return generate_latest(registry)
    finally:
        gpu.close()


def _training() -> bytes:
    # Two ranks of job 4242, three steps each, as the hook packs them; the clock is fixed.
    collector = TrainingCollector("/nonexistent/training.sock", clock=lambda: 1764496800.0)
    for step in (1, 2, 3):
        for rank in (0, 1):
            phases = (0.002 * rank, 0.03, 0.06, 0.01, 0.02 + 0.01 * rank)
            duration = sum(phases) + 0.001
            record = RECORD.pack(b"FSTR", 1, step, rank, rank, 2, duration, *phases, 64.0, 0.0, 2.0 / step, 0)
            collector.feed(record + b"4242")
    collector.error = None  # the socket is not what this golden is about
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry)


def _infiniband(tree: str) -> Callable[[], bytes]:
    def build() -> bytes:
        registry = CollectorRegistry()
        registry.register(InfinibandCollector(FIXTURES / "infiniband" / tree))
        return generate_latest(registry)

    return build


CASES: dict[str, Callable[..., bytes]] = {
    # Real sysfs trees (tests/fixtures/infiniband/SOURCES.md): mlx4 with counters_ext and i40iw
    # (node_exporter), mlx4, mlx5 with RoCE hw_counters and hfi1 (procfs), two EFA generations.
    "infiniband_node_exporter.prom": _infiniband("node_exporter"),
    "infiniband_procfs.prom": _infiniband("procfs"),
    "infiniband_efa_perftest113.prom": _infiniband("efa_perftest113_server"),
    "infiniband_efa_awsdocs.prom": _infiniband("efa_awsdocs"),
    "host.prom": _host,
    "gpu_h100_sxm_x8.prom": _gpu(H100_X8, 60.0),
    "gpu_tesla_t4.prom": _gpu(T4, 60.0),
    "gpu_h100_mig.prom": _gpu(H100_MIG, 60.0),
    "gpu_h200.prom": _gpu(H200, 60.0),
    "nvlink_h200.prom": _nvlink,
    "jobs.prom": _jobs,
    "training.prom": _training,
    "xid.prom": _xid,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_exposition(name: str, tmp_path: Path) -> None:
    build = CASES[name]
    output = build(tmp_path) if build is _xid else build()
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_bytes(output)
    assert output == golden.read_bytes(), f"{name} differs from its golden file; see the module docstring"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_passes_promtool(name: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=(GOLDEN / name).read_bytes(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
