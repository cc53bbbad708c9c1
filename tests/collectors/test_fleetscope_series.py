"""fleetscope's own exporter series as evidence: the golden expositions (exporter on the fake NVML) fed
through the engine, edited the way a fault changes them, in the typed form the exporter serves and the
``untyped`` form the PromQL API gives back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fleetscope.collectors.detectors.gpu_health import FAULT_CLOCK_REASONS, MEMORY_SERIES
from fleetscope.exporters.gpu import CLOCK_EVENT_REASONS, INFO, LOST, METRICS, UP
from fleetscope.exporters.xid import FALLEN_OFF_BUS, XID_ERRORS
from tests.collectors.judging import diagnose

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
H100 = (GOLDEN / "gpu_h100_sxm_x8.prom").read_text()
XID31 = (
    "[14328.198504] NVRM: Xid (PCI:0000:0a:00): 31, pid=13332, name=cuda_plot_k32_v, Ch 00000010, "
    "intr 00000000. MMU Fault: ENGINE CE2 HUBCLIENT_CE0 faulted @ 0x7f29_5b8c9000. Fault is of type "
    "FAULT_PRIV_VIOLATION ACCESS_TYPE_VIRT_READ\n"
)


def top(report: dict[str, Any]) -> tuple[Any, ...]:
    first = report["root_causes"][0]
    return (first["kind"], first["layer"], first["node"], first["gpu"], first["gpu_pci_bus_id"])


def set_sample(exposition: str, sample: str, value: float) -> str:
    """Replace the value of one sample line (``name{labels}``) of an exposition."""
    edited, n = re.subn(rf"^{re.escape(sample)} .*$", f"{sample} {value}", exposition, flags=re.M)
    assert n == 1, sample
    return edited


def untyped(exposition: str) -> str:
    """The exposition as the PromQL source writes it back: every family untyped, full sample names."""
    return "".join(
        line + "\n" for line in exposition.splitlines() if line.strip() and not line.startswith("#")
    )


@pytest.mark.parametrize("golden", ["gpu_h100_sxm_x8.prom", "gpu_tesla_t4.prom", "host.prom"])
def test_healthy_golden_expositions_are_no_incident(tmp_path: Path, golden: str) -> None:
    report = diagnose(tmp_path, {"gpu-a17/metrics.prom": (GOLDEN / golden).read_text()})
    assert report["incident"] is False
    assert report["root_causes"] == []


def test_golden_xid_exposition_names_the_gpu_that_fell_off_the_bus(tmp_path: Path) -> None:
    report = diagnose(tmp_path, {"gpu-a17/metrics.prom": (GOLDEN / "xid.prom").read_text()})
    causes = [(r["kind"], r["layer"], r["gpu"], r["gpu_pci_bus_id"]) for r in report["root_causes"]]
    assert causes[0] == ("xid:79", "gpu_hardware", None, "0000:b3:00.0")
    assert set(causes[1:]) == {("xid:62", "gpu_hardware", 0, None), ("xid:31", "job", 0, None)}
    symptoms = {(s["kind"], s["gpu"], s["gpu_pci_bus_id"], s["count"]) for s in report["symptoms"]}
    assert ("xid:45", 0, None, 8) in symptoms
    assert ("xid:45", None, "0000:ba:00.0", 2) in symptoms


@pytest.mark.parametrize("xid", [48, 63, 64, 74, 79, 92, 94, 95, 119, 144, 154])
@pytest.mark.parametrize("form", [str, untyped])
def test_an_xid_counted_by_the_exporter_is_the_same_finding_as_the_kernel_line(
    tmp_path: Path, xid: int, form: Any
) -> None:
    line = f"[ 5210.004150] NVRM: Xid (PCI:0000:5d:00): {xid}, pid=8812, name=python3, Ch 00000008\n"
    from_log = diagnose(tmp_path / "log", {"ip-10-1-2-3/kern.log": line, "ip-10-1-2-3/metrics.prom": H100})
    counter = (
        f"# HELP {XID_ERRORS.name} {XID_ERRORS.help}\n# TYPE {XID_ERRORS.name} counter\n"
        f'{XID_ERRORS.name}{{gpu="3",xid="{xid}"}} 1.0\n'
    )
    from_metric = diagnose(tmp_path / "metric", {"ip-10-1-2-3/metrics.prom": form(H100 + counter)})
    first_log, first_metric = from_log["root_causes"][0], from_metric["root_causes"][0]
    assert (
        top(from_log)
        == top(from_metric)
        == (
            f"xid:{xid}",
            first_log["layer"],
            "ip-10-1-2-3",
            3,
            "0000:5d:00.0",
        )
    )
    assert first_metric["action"] == first_log["action"]


def test_a_counter_keyed_by_bus_id_is_mapped_through_gpu_info(tmp_path: Path) -> None:
    counter = f'{XID_ERRORS.name}{{gpu="0000:ba:00.0",xid="94"}} 2.0\n'
    report = diagnose(tmp_path, {"gpu-b02/metrics.prom": untyped(H100) + counter})
    assert top(report) == ("xid:94", "gpu_memory", "gpu-b02", 6, "0000:ba:00.0")
    assert "(2 times)" in report["root_causes"][0]["summary"]


def test_counter_and_kernel_lines_of_the_same_xid_are_not_added(tmp_path: Path) -> None:
    counter = f'{XID_ERRORS.name}{{gpu="0",xid="31"}} 1.0\n'
    line = XID31.replace("0000:0a:00", "0000:18:00")
    report = diagnose(tmp_path, {"gpu-b02/kern.log": line, "gpu-b02/metrics.prom": H100 + counter})
    first = report["root_causes"][0]
    assert (first["kind"], first["gpu"], first["gpu_pci_bus_id"]) == ("xid:31", 0, "0000:18:00.0")
    assert "times" not in first["summary"]
    assert {e["source"] for e in first["evidence"]} >= {"gpu-b02/kern.log:1"}


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("fleetscope_gpu_ecc_volatile_corrected_errors_total", "gpu_memory"),
        ("fleetscope_gpu_ecc_aggregate_corrected_errors_total", "gpu_memory"),
        ("fleetscope_gpu_remapped_rows_correctable_total", "gpu_memory"),
        ("fleetscope_gpu_pcie_replays_total", "gpu_hardware"),
    ],
)
def test_one_gpu_far_above_its_peers_across_nodes(tmp_path: Path, name: str, layer: str) -> None:
    files = {f"gpu-a{n}/metrics.prom": H100 for n in (11, 12, 13)}
    files["gpu-a12/metrics.prom"] = set_sample(H100, f'{name}{{gpu="2"}}', 48213.0)
    report = diagnose(tmp_path, files)
    assert top(report) == (f"peer_deviation:{name}", layer, "gpu-a12", 2, "0000:3a:00.0")
    assert len(report["root_causes"]) == 1


@pytest.mark.parametrize(
    ("sample", "value", "expected"),
    [
        ('fleetscope_gpu_ecc_volatile_uncorrected_errors_total{gpu="4"}', 3.0, "gpu_memory_errors"),
        ('fleetscope_gpu_remapped_rows_failure{gpu="4"}', 1.0, "gpu_memory_errors"),
        ('fleetscope_gpu_remapped_rows_uncorrectable_total{gpu="4"}', 2.0, "gpu_memory_errors"),
        ('fleetscope_gpu_remapped_rows_pending{gpu="4"}', 1.0, "gpu_memory_errors"),
        ('fleetscope_gpu_clock_event_reason_active{gpu="4",reason="hw_thermal_slowdown"}', 1.0, "thermal"),
        ('fleetscope_gpu_clock_event_reason_active{gpu="4",reason="sw_thermal_slowdown"}', 1.0, "thermal"),
        (
            'fleetscope_gpu_clock_event_reason_active{gpu="4",reason="hw_power_brake_slowdown"}',
            1.0,
            "thermal",
        ),
        ('fleetscope_gpu_lost{gpu="4"}', 1.0, "xid:79"),
        ('fleetscope_gpu_up{gpu="4"}', 0.0, "nvml_unresponsive"),
    ],
)
@pytest.mark.parametrize("form", [str, untyped])
def test_gpu_health_series_name_the_gpu(
    tmp_path: Path, sample: str, value: float, expected: str, form: Any
) -> None:
    report = diagnose(tmp_path, {"ip-10-1-2-3/metrics.prom": form(set_sample(H100, sample, value))})
    layer = {
        "gpu_memory_errors": "gpu_memory",
        "thermal": "thermal_power",
        "xid:79": "gpu_hardware",
        "nvml_unresponsive": "gpu_hardware",
    }[expected]
    kind = "thermal_slowdown" if expected == "thermal" else expected
    assert top(report) == (kind, layer, "ip-10-1-2-3", 4, "0000:9a:00.0")


def test_a_lost_gpu_is_not_also_reported_unresponsive(tmp_path: Path) -> None:
    exposition = set_sample(
        set_sample(H100, 'fleetscope_gpu_lost{gpu="1"}', 1.0), 'fleetscope_gpu_up{gpu="1"}', 0
    )
    report = diagnose(tmp_path, {"gpu-a17/metrics.prom": exposition})
    assert [r["kind"] for r in report["root_causes"]] == ["xid:79"]


def test_power_cap_and_idle_clock_reasons_are_not_faults(tmp_path: Path) -> None:
    exposition = set_sample(
        H100, 'fleetscope_gpu_clock_event_reason_active{gpu="0",reason="sw_power_cap"}', 1.0
    )
    assert diagnose(tmp_path, {"gpu-a17/metrics.prom": exposition})["incident"] is False


def test_every_series_the_detectors_read_is_one_the_exporter_serves() -> None:
    exported = {m.spec.name for m in METRICS} | {INFO.name, UP.name, LOST.name}
    exported |= {XID_ERRORS.name, FALLEN_OFF_BUS.name}
    read = {row[0] for row in MEMORY_SERIES if row[0].startswith("fleetscope_")}
    read.add("fleetscope_gpu_clock_event_reason_active")
    assert read <= exported
    assert {r.label for r in FAULT_CLOCK_REASONS} <= set(CLOCK_EVENT_REASONS)
