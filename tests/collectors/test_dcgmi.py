"""``dcgmi health -c`` and ``dcgmi diag`` tables (samples in tests/fixtures/dcgmi, see SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.judging import diagnose

DCGMI = Path(__file__).resolve().parent.parent / "fixtures" / "dcgmi"
HEALTH = (DCGMI / "health-check-pcie-warning.txt").read_text()
DIAG_FAIL = (DCGMI / "diag-r3-pcie-fail.txt").read_text()


@pytest.mark.parametrize("sample", ["health-check-healthy.txt", "diag-r3-pass.txt"])
def test_healthy_reports_are_no_incident(tmp_path: Path, sample: str) -> None:
    report = diagnose(tmp_path, {"gpu-a17/dcgmi.txt": (DCGMI / sample).read_text()})
    assert report["incident"] is False


def test_health_check_names_the_watch_and_the_gpu(tmp_path: Path) -> None:
    top = diagnose(tmp_path, {"gpu-a17/dcgmi.txt": HEALTH})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu"]) == (
        "dcgm_health:pcie",
        "gpu_hardware",
        "gpu-a17",
        0,
    )
    assert "Detected more than 8 PCIe" in top["summary"]


@pytest.mark.parametrize(
    ("system", "message", "layer"),
    [
        ("Memory", "Detected a double-bit ECC error", "gpu_memory"),
        ("NVLink", "Detected a NvLink CRC error", "nvlink"),
        ("Thermal", "Detected clocks event due to thermal violation", "thermal_power"),
        ("Power", "Detected clocks event due to power violation", "thermal_power"),
        ("PCIe", "Detected more than 8 PCIe replays per minute", "gpu_hardware"),
    ],
)
@pytest.mark.parametrize("level", ["Warning", "Failure"])
def test_a_failing_watch_gives_its_layer_on_its_gpu(
    tmp_path: Path, system: str, message: str, layer: str, level: str
) -> None:
    text = (
        HEALTH.replace("GPU ID: 0 ", "GPU ID: 5 ")
        .replace("Overall Health: Warning", f"Overall Health: {level}")
        .replace("PCIe system: Warning - Detected more than 8 PCIe", f"{system} system: {level} - {message}")
    )
    report = diagnose(tmp_path, {"ip-10-1-2-3/dcgmi.txt": text})
    top = report["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu"]) == (
        f"dcgm_health:{system.lower()}",
        layer,
        "ip-10-1-2-3",
        5,
    )
    assert len(report["root_causes"]) == 1


@pytest.mark.parametrize(
    ("test", "layer"),
    [
        ("PCIe", "gpu_hardware"),
        ("GPU Memory", "gpu_memory"),
        ("Memory Bandwidth", "gpu_memory"),
        ("Targeted Power", "thermal_power"),
        ("Targeted Stress", "gpu_hardware"),
        ("Persistence Mode", "host_software"),
    ],
)
def test_a_failed_diag_test_gives_its_layer_on_its_gpus(tmp_path: Path, test: str, layer: str) -> None:
    rows = (DCGMI / "diag-r3-pass.txt").read_text().splitlines()
    text = "\n".join(
        f"| {test:<25} | Fail - GPU: 3, 6{' ' * 31}|" if ln.startswith(f"| {test} ") else ln for ln in rows
    )
    report = diagnose(tmp_path, {"gpu-b02/dcgmi.txt": text})
    located = {(r["kind"], r["layer"], r["node"], r["gpu"]) for r in report["root_causes"]}
    kind = f"dcgm_diag:{test.lower().replace(' ', '_')}"
    # Two GPUs of one node failing the same test are reported once, naming both; the first stands for them.
    assert located == {(kind, layer, "gpu-b02", 3)}
    top = report["root_causes"][0]
    assert top["summary"].startswith("The same fault on 2 GPUs of gpu-b02 (GPU 3; GPU 6): ")


def test_the_real_failed_pcie_diag_names_gpu_2(tmp_path: Path) -> None:
    top = diagnose(tmp_path, {"gpu-b02/dcgmi.txt": DIAG_FAIL})["root_causes"][0]
    assert (top["kind"], top["layer"], top["gpu"]) == ("dcgm_diag:pcie", "gpu_hardware", 2)
