"""Helpers shared by the exporter tests and benchmark: fixture paths, polling, exposition parsing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetscope.exporters.config import ExporterConfig
from fleetscope.exporters.server import Exporter
from tests.exporters.fake_nvml import FakeNvml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
H100_X8 = FIXTURES / "nvidia-smi" / "h100-sxm-80gb-x8_drv565.57.01.txt"
T4 = FIXTURES / "nvidia-smi" / "telegraf_tesla-t4.xml"
H200 = FIXTURES / "nvidia-smi" / "linux-x86_64__nvidia-h200__590.48.01.txt"
H100_MIG = FIXTURES / "nvidia-smi" / "linux-x86_64__nvidia-h100-mig__590.48.01.txt"
KERNEL_LOGS = FIXTURES / "kernel-log"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll until ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse Prometheus text into ``{(sample name, sorted labels): value}``."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


@contextmanager
def running_exporter(
    kernel_log: Path, nvml: FakeNvml | None = None, **settings: object
) -> Iterator[Exporter]:
    """A real exporter on a free 127.0.0.1 port, reading the fixture ``/proc`` and ``/sys`` and following
    ``kernel_log``; with ``nvml`` None the GPU collector is off. Extra ``settings`` override the config."""
    values: dict[str, object] = {
        "listen_address": "127.0.0.1:0",
        "path_procfs": str(FIXTURES / "procfs"),
        "path_sysfs": str(FIXTURES / "sysfs"),
        "xid_kernel_log": str(kernel_log),
        "collector_gpu": nvml is not None,
        "nvlink_probe_interval_seconds": 0,  # no CUDA peers here; keeps torch out of the test process
        "training_socket": str(kernel_log.parent / "training.sock"),  # never the shared default in /tmp
    }
    config = ExporterConfig.model_validate({**values, **settings})
    exporter = Exporter(config, nvml=nvml).start() if nvml is not None else Exporter(config).start()
    try:
        yield exporter
    finally:
        exporter.stop()
