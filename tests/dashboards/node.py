"""A simulated GPU node for the dashboard tests: a real exporter process on the fake NVML, with faults.

``python -m tests.dashboards.node SPEC`` (SPEC is JSON) starts an exporter on a free 127.0.0.1 port with
the fake NVML built from ``capture`` (a file of tests/fixtures/nvidia-smi), the fixture /proc, the
``settings`` given (ExporterConfig fields), and follows ``kernel_log``. It prints the port on one line,
then makes the hardware faults of ``faults`` happen until SIGTERM:

* ``lost``: GPUs that fell off the bus; ``hung``: GPUs whose NVML calls never return;
* ``thermal``: GPUs held down by hardware thermal slowdown;
* ``remap_pending`` / ``remap_failed``: GPUs with a row remap pending / that ran out of spare rows;
* ``ecc_rising``, ``replays_rising``: GPUs whose uncorrectable ECC / PCIe replay counters keep rising;
* ``nvlink_rising``: GPUs whose link 0 counts every NVLink error kind, rising.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pynvml

from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import FIXTURES, running_exporter

NVLINK_ERRORS = ("CRC_FLIT", "CRC_DATA", "REPLAY", "RECOVERY", "ECC_DATA")


def _static_faults(nvml: FakeNvml, faults: dict[str, list[int]]) -> None:
    for index in faults.get("lost", []):
        nvml.lose_gpu(index)
    for index in faults.get("hung", []):
        nvml.hang_gpu(index)
    for index in faults.get("thermal", []):
        nvml.gpus[index].reasons = pynvml.nvmlClocksEventReasonHwThermalSlowdown
    for index in faults.get("remap_pending", []):
        nvml.gpus[index].values["remapped_pending"] = "Yes"
    for index in faults.get("remap_failed", []):
        nvml.gpus[index].values["remapped_failure"] = "Yes"


def _rising_faults(nvml: FakeNvml, faults: dict[str, list[int]], tick: int) -> None:
    uncorrected = (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)
    for index in faults.get("ecc_rising", []):
        nvml.gpus[index].ecc[uncorrected] = tick
    for index in faults.get("replays_rising", []):
        nvml.gpus[index].values["pcie_replays"] = str(100 * tick)
    for index in faults.get("nvlink_rising", []):
        for kind in NVLINK_ERRORS:
            nvml.set_nvlink_errors(index, 0, getattr(pynvml, f"NVML_NVLINK_ERROR_DL_{kind}"), tick)


def main(argv: list[str]) -> None:
    spec: dict[str, Any] = json.loads(argv[0])
    nvml = FakeNvml.from_capture(FIXTURES / "nvidia-smi" / spec["capture"])
    faults: dict[str, list[int]] = spec.get("faults", {})
    _static_faults(nvml, faults)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running_exporter(Path(spec["kernel_log"]), nvml, **spec.get("settings", {})) as exporter:
        print(exporter.port, flush=True)
        tick = 0
        while not stop.wait(0.2):
            tick += 1
            _rising_faults(nvml, faults, tick)
        for index in faults.get("hung", []):
            nvml.release_gpu(index)


if __name__ == "__main__":
    main(sys.argv[1:])
