"""The GPU recovery action: anything but None is an incident on that GPU, with the documented action.

Shapes: ``nvidia-smi -q`` from tests/fixtures/nvidia-smi (a real 8x H100 capture, see its SOURCES.md),
``nvidia-smi --query-gpu=index,pci.bus_id,gpu_recovery_action --format=csv`` (field name from
``nvidia-smi --help-query-gpu``), and dcgm-exporter's metric for DCGM field 1523
(DCGM dcgm_fields.h ``DCGM_FI_DEV_GPU_RECOVERY_ACTION``, the numeric NVML value).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetscope.collectors import knowledge
from tests.collectors.judging import diagnose

SMI_Q = (
    Path(__file__).resolve().parent.parent / "fixtures" / "nvidia-smi" / "h100-sxm-80gb-x8_drv565.57.01.txt"
)
ACTIONS = {c: e for c, e in knowledge.load("gpu_recovery_action.yaml")["actions"].items() if c}


def _smi_q(text: str) -> str:
    """The real capture with the GPU at 3A:00.0 (index 2) asking for ``text``."""
    lines = SMI_Q.read_text().splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.startswith("GPU 00000000:3A:00.0"))
    at = next(i for i in range(start, len(lines)) if "GPU Recovery Action" in lines[i])
    lines[at] = lines[at].replace(": None", f": {text}")
    return "".join(lines)


def test_all_none_is_no_incident(tmp_path: Path) -> None:
    assert diagnose(tmp_path, {"node-02/nvidia-smi-q.txt": SMI_Q.read_text()})["incident"] is False


@pytest.mark.parametrize("code", sorted(ACTIONS))
def test_smi_q_recovery_action_is_an_incident_on_that_gpu(tmp_path: Path, code: int) -> None:
    entry = ACTIONS[code]
    top = diagnose(tmp_path, {"node-02/nvidia-smi-q.txt": _smi_q(entry["text"])})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu"], top["gpu_pci_bus_id"]) == (
        f"gpu_recovery_action:{code}",
        entry["layer"],
        "node-02",
        2,
        "0000:3a:00.0",
    )
    assert top["action"] == entry["action"]
    assert entry["text"] in top["summary"]


@pytest.mark.parametrize("code", sorted(ACTIONS))
def test_query_gpu_csv(tmp_path: Path, code: int) -> None:
    rows = ["index, pci.bus_id, gpu_recovery_action"] + [
        f"{i}, 00000000:{bus}:00.0, {ACTIONS[code]['text'] if i == 3 else 'None'}"
        for i, bus in enumerate(("18", "2A", "3A", "5D"))
    ]
    top = diagnose(tmp_path, {"node-09/smi.csv": "\n".join(rows) + "\n"})["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"]) == (f"gpu_recovery_action:{code}", "node-09", 3)


@pytest.mark.parametrize("code", sorted(ACTIONS))
def test_dcgm_exporter_field(tmp_path: Path, code: int) -> None:
    scrape = "# HELP DCGM_FI_DEV_GPU_RECOVERY_ACTION GPU recovery action.\n" + "".join(
        f'DCGM_FI_DEV_GPU_RECOVERY_ACTION{{gpu="{g}",UUID="GPU-{g}",'
        f'pci_bus_id="00000000:{0x18 + g:02X}:00.0",Hostname="node-04"}} {code if g == 5 else 0}\n'
        for g in range(8)
    )
    top = diagnose(tmp_path, {"node-04/metrics.prom": scrape})["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"]) == (f"gpu_recovery_action:{code}", "node-04", 5)


def test_unknown_text_is_not_an_incident(tmp_path: Path) -> None:
    rows = "index, pci.bus_id, gpu_recovery_action\n0, 00000000:18:00.0, [N/A]\n"
    assert diagnose(tmp_path, {"node-09/smi.csv": rows})["incident"] is False


@pytest.mark.parametrize(
    ("code", "name"), [(1, "GPU_RESET"), (2, "NODE_REBOOT"), (3, "DRAIN_P2P"), (4, "DRAIN_AND_RESET")]
)
def test_dcgm_health_watch_recovery_action(tmp_path: Path, code: int, name: str) -> None:
    # nv-hostengine's log line for a health incident (DcgmHealthWatch.cpp "Detected a {} in health system
    # {}: '{}'") carrying DCGM_FR_GPU_RECOVERY_*_MSG for GPU 6.
    line = (
        "2025-03-04 10:00:01.123 ERROR [4411:4412] Detected a FAILURE in health system Driver: 'GPU 6 "
        f"requires attention. Recovery action: {code} ({name}).' [DcgmHealthWatch.cpp:890]\n"
    )
    top = diagnose(tmp_path, {"node-05/nv-hostengine.log": line})["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"]) == (f"gpu_recovery_action:{code}", "node-05", 6)
    assert top["action"] == ACTIONS[code]["action"]
