"""The GPU collector against the fake NVML: supported and missing fields, lost and hung GPUs, no driver."""

from __future__ import annotations

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetscope.exporters.gpu import GpuCollector
from fleetscope.exporters.scrape import ScrapeCollector, SourceUnavailable
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_MIG, H100_X8, T4, samples, wait_for


def scrape(collector: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    return samples(generate_latest(registry).decode())


def gpu_values(result: dict, name: str) -> dict[str, float]:
    return {dict(labels)["gpu"]: value for (sample, labels), value in result.items() if sample == name}


@pytest.fixture
def h100() -> FakeNvml:
    return FakeNvml.from_capture(H100_X8)


def test_readings_are_converted_to_base_units(h100: FakeNvml) -> None:
    collector = GpuCollector(h100)
    result = scrape(collector)
    gpu0 = (("gpu", "0"),)
    # GPU 0 of the capture: 30 C, 36 C HBM, 100.89 W, 81559 MiB total, 345 MHz SM, 7 PCIe replays.
    assert result[("fleetscope_gpu_temperature_celsius", gpu0)] == 30
    assert result[("fleetscope_gpu_memory_temperature_celsius", gpu0)] == 36
    assert result[("fleetscope_gpu_power_watts", gpu0)] == pytest.approx(100.89)
    assert result[("fleetscope_gpu_memory_total_bytes", gpu0)] == 81559 * 2**20
    assert result[("fleetscope_gpu_sm_clock_hertz", gpu0)] == 345e6
    assert result[("fleetscope_gpu_pcie_replays_total", gpu0)] == 7
    # The capture shows "Idle : Active" and every other reason "Not Active".
    reasons = {
        dict(labels)["reason"]: value
        for (name, labels), value in result.items()
        if name == "fleetscope_gpu_clock_event_reason_active" and dict(labels)["gpu"] == "0"
    }
    assert reasons.pop("gpu_idle") == 1 and set(reasons.values()) == {0.0}
    collector.close()


def test_energy_counter_grows_with_recorded_power(h100: FakeNvml) -> None:
    collector = GpuCollector(h100)
    before = gpu_values(scrape(collector), "fleetscope_gpu_energy_joules_total")["0"]
    h100.advance(10.0)
    after = gpu_values(scrape(collector), "fleetscope_gpu_energy_joules_total")["0"]
    assert after - before == pytest.approx(100.89 * 10)  # mJ from NVML -> J
    collector.close()


def test_not_supported_fields_are_absent_for_that_gpu_only() -> None:
    collector = GpuCollector(FakeNvml.from_capture(T4))
    names = {name for name, _ in scrape(collector)}
    # The T4 capture prints memory_temp and remapped_rows as N/A: NVML says NotSupported for them.
    assert "fleetscope_gpu_memory_temperature_celsius" not in names
    assert not any(name.startswith("fleetscope_gpu_remapped_rows") for name in names)
    assert {
        "fleetscope_gpu_temperature_celsius",
        "fleetscope_gpu_power_watts",
        "fleetscope_gpu_info",
    } <= names
    collector.close()


def test_lost_gpu_is_reported_and_the_others_continue(h100: FakeNvml) -> None:
    collector = GpuCollector(h100)
    scrape(collector)
    h100.lose_gpu(3)
    result = scrape(collector)
    assert gpu_values(result, "fleetscope_gpu_lost")["3"] == 1
    assert gpu_values(result, "fleetscope_gpu_up")["3"] == 0
    temperatures = gpu_values(result, "fleetscope_gpu_temperature_celsius")
    assert "3" not in temperatures and len(temperatures) == 7
    # Identity read before the loss stays, so dashboards can still name the lost GPU.
    assert "3" in gpu_values(result, "fleetscope_gpu_info")
    collector.close()


def test_hung_gpu_is_bounded_by_the_deadline_and_comes_back(h100: FakeNvml) -> None:
    collector = GpuCollector(h100, timeout=0.3)
    scrape(collector)
    h100.hang_gpu(2)
    result = scrape(collector)
    assert gpu_values(result, "fleetscope_gpu_up")["2"] == 0
    assert gpu_values(result, "fleetscope_gpu_nvml_timeouts_total")["2"] == 1
    assert len(gpu_values(result, "fleetscope_gpu_temperature_celsius")) == 7
    # While the call is stuck the GPU is skipped: no second call is queued behind the first.
    result = scrape(collector)
    assert gpu_values(result, "fleetscope_gpu_nvml_timeouts_total")["2"] == 1
    h100.release_gpu(2)
    # The stuck call returns in the GPU's worker thread; the first scrape after that reads it again.
    wait_for(lambda: gpu_values(scrape(collector), "fleetscope_gpu_up")["2"] == 1)
    assert "2" in gpu_values(scrape(collector), "fleetscope_gpu_temperature_celsius")
    collector.close()


@pytest.mark.parametrize("error", [pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded])
def test_without_driver_the_collector_reports_failure_not_an_exception(error: type[Exception]) -> None:
    collector = GpuCollector(FakeNvml.without_driver(error))
    with pytest.raises(SourceUnavailable, match="NVML unavailable"):
        list(collector.collect())
    result = scrape(ScrapeCollector([collector]))
    assert result[("fleetscope_scrape_collector_success", (("collector", "gpu"),))] == 0
    assert not any(name.startswith("fleetscope_gpu_") for name, _ in result)
    collector.close()


def test_bus_id_maps_to_nvml_index(h100: FakeNvml) -> None:
    collector = GpuCollector(h100)
    assert collector.gpu_for_bus_id("0000:2a:00.0") is None  # not enumerated before the first scrape
    scrape(collector)
    assert collector.gpu_for_bus_id("0000:2a:00.0") == "1"
    assert collector.gpu_for_bus_id("0000:ff:00.0") is None
    collector.close()


@pytest.mark.gpu
def test_real_nvml_reports_every_gpu() -> None:
    collector = GpuCollector()  # the real pynvml
    try:
        result = scrape(ScrapeCollector([collector]))
        assert result[("fleetscope_scrape_collector_success", (("collector", "gpu"),))] == 1
        up = gpu_values(result, "fleetscope_gpu_up")
        assert up and set(up.values()) == {1.0}
        assert set(gpu_values(result, "fleetscope_gpu_temperature_celsius")) == set(up)
        assert all(0 < w < 2000 for w in gpu_values(result, "fleetscope_gpu_power_watts").values())
    finally:
        collector.close()


def test_mig_devices_and_processes_come_from_nvml() -> None:
    collector = GpuCollector(FakeNvml.from_capture(H100_MIG))
    result = scrape(collector)
    collector.close()
    # The capture's load section: 4 MIG devices (GPU instances 2, 3, 9, 10) and 3 compute processes.
    mig = {
        dict(labels)["gpu_instance"]: value
        for (name, labels), value in result.items()
        if name == "fleetscope_gpu_mig_memory_used_bytes"
    }
    assert mig == {"2": 11091 * 2**20, "3": 17 * 2**20, "9": 9 * 2**20, "10": 9 * 2**20}
    assert (
        result[("fleetscope_gpu_process_memory_used_bytes", (("gpu", "0"), ("pid", "21198")))] == 7484 * 2**20
    )
    assert collector.processes() == {"0": [21180, 21181, 21198]}
    assert result[("fleetscope_gpu_pcie_receive_bytes_per_second", (("gpu", "0"),))] == 19191e3


def test_a_gpu_answering_only_errors_is_down_and_the_others_stay_up(h100: FakeNvml) -> None:
    collector = GpuCollector(h100)
    scrape(collector)
    h100.fail_gpu(3, pynvml.NVMLError_Timeout)
    result = scrape(collector)
    collector.close()
    up = gpu_values(result, "fleetscope_gpu_up")
    assert up.pop("3") == 0 and set(up.values()) == {1.0}
    assert "3" not in gpu_values(result, "fleetscope_gpu_temperature_celsius")
