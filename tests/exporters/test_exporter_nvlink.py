"""The nvlink collector on the fake NVML (real nvlink -s capture), and when its probe stays off."""

from __future__ import annotations

import importlib.util

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetscope.exporters.gpu import GpuCollector
from fleetscope.exporters.nvlink import NvlinkCollector, P2PLatencyProbe
from fleetscope.exporters.scrape import SourceUnavailable
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H200, T4, samples, wait_for


def scrape(collector: NvlinkCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    return samples(generate_latest(registry).decode())


def test_a_hung_gpu_leaves_its_links_out_without_hanging_the_scrape() -> None:
    nvml = FakeNvml.from_capture(H200)
    gpu = GpuCollector(nvml, timeout=0.2)
    list(gpu.collect())
    nvml.hang_gpu(0)
    try:
        with pytest.raises(SourceUnavailable, match="no GPU answered"):
            list(NvlinkCollector(gpu).collect())
    finally:
        nvml.release_gpu(0)
        gpu.close()


def test_error_counters_and_speed_are_per_link() -> None:
    nvml = FakeNvml.from_capture(H200)
    nvml.set_nvlink_errors(0, 17, pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT, 12)
    gpu = GpuCollector(nvml)
    list(gpu.collect())
    result = scrape(NvlinkCollector(gpu))
    gpu.close()
    assert result[("fleetscope_nvlink_crc_flit_errors_total", (("gpu", "0"), ("link", "17")))] == 12
    speeds = {v for (name, _), v in result.items() if name == "fleetscope_nvlink_speed_bytes_per_second"}
    assert speeds == {26562e6}  # 26.562 GB/s on each of the 18 links


def test_without_nvlink_or_gpu_collector_the_collector_is_unavailable() -> None:
    gpu = GpuCollector(FakeNvml.from_capture(T4))  # a PCIe board: no NVLink, no fabric
    list(gpu.collect())
    with pytest.raises(SourceUnavailable):
        list(NvlinkCollector(gpu).collect())
    gpu.close()
    with pytest.raises(SourceUnavailable, match="gpu collector"):
        list(NvlinkCollector(None).collect())


def test_probe_is_off_without_peers() -> None:
    probe = P2PLatencyProbe(lambda: 1, interval=0.01)
    probe.start()
    wait_for(lambda: probe.reason != "not started")
    assert not probe.running and "fewer than two GPUs" in probe.reason


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_probe_is_off_when_torch_sees_no_cuda_peers() -> None:
    probe = P2PLatencyProbe(lambda: 8, interval=0.01)
    probe.start()
    wait_for(lambda: probe.reason != "not started", timeout=60)
    assert not probe.running
    assert probe.reason == "torch sees fewer than two CUDA devices" or "peer to peer" in probe.reason


def test_each_error_counter_comes_from_its_own_nvml_counter() -> None:
    # Flit CRC, replay and recovery come from the link-scoped fields of the one nvmlDeviceGetFieldValues
    # call; data CRC and data ECC from nvmlDeviceGetNvLinkErrorCounter. Each lands in its own series.
    nvml = FakeNvml.from_capture(H200)
    counters = {
        "fleetscope_nvlink_crc_flit_errors_total": pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT,
        "fleetscope_nvlink_replay_errors_total": pynvml.NVML_NVLINK_ERROR_DL_REPLAY,
        "fleetscope_nvlink_recovery_errors_total": pynvml.NVML_NVLINK_ERROR_DL_RECOVERY,
        "fleetscope_nvlink_crc_data_errors_total": pynvml.NVML_NVLINK_ERROR_DL_CRC_DATA,
        "fleetscope_nvlink_ecc_data_errors_total": pynvml.NVML_NVLINK_ERROR_DL_ECC_DATA,
    }
    for link, counter in enumerate(counters.values()):
        nvml.set_nvlink_errors(0, link, counter, 10 + link)
    gpu = GpuCollector(nvml)
    list(gpu.collect())
    result = scrape(NvlinkCollector(gpu))
    gpu.close()
    for link, name in enumerate(counters):
        assert {labels: v for (n, labels), v in result.items() if n == name} == {
            (("gpu", "0"), ("link", str(link))): 10 + link
        }
    assert sum(1 for n, _ in result if n == "fleetscope_nvlink_up") == 18  # every link, read once each
