"""EFA/libfabric failures take their layer from ``libfabric_errors.yaml`` alone (docs/design.md: EFA is
``network``; ``host_software`` only where the host's configuration or driver install is at fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetscope.collectors import investigate, knowledge

CATALOGUE = knowledge.load("libfabric_errors.yaml")
FI_ERRNO = sorted(c for c in CATALOGUE["fi_errno"] if c != 0)
GETINFO = (
    "[2025-10-16 22:16:08] gpu-a17:1929:1937 [0] nccl_net_ofi_rdma_init:7978 NCCL WARN NET/OFI OFI "
    "fi_getinfo() call failed: No data available\n"
)


def entries() -> list[dict]:
    return [*CATALOGUE["fi_errno"].values(), *CATALOGUE["efa_prov_errno"].values(), *CATALOGUE["messages"]]


def test_every_host_software_entry_says_why_and_fabric_faults_are_network() -> None:
    for entry in entries():
        assert entry["layer"] in ("network", "host_software"), entry
        if entry["layer"] == "host_software":
            assert entry.get("layer_reason"), entry
    messages = {m["id"]: m["layer"] for m in CATALOGUE["messages"]}
    assert messages["ofi_getinfo_no_data"] == messages["ofi_no_protocol"] == "network"
    assert CATALOGUE["fi_errno"][61]["layer"] == "network"


def test_fi_getinfo_no_data_is_a_network_fault(tmp_path: Path) -> None:
    (tmp_path / "gpu-a17").mkdir()
    (tmp_path / "gpu-a17" / "nccl.log").write_text(GETINFO)
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("ofi_call_failed:fi_getinfo", "network", "gpu-a17")
    assert top["action"] == CATALOGUE["messages"][0]["action"]


def test_a_host_permission_failure_is_host_software(tmp_path: Path) -> None:
    (tmp_path / "gpu-a17").mkdir()
    (tmp_path / "gpu-a17" / "nccl.log").write_text(
        GETINFO.replace(
            "fi_getinfo() call failed: No data available", "fi_domain() call failed: Operation not permitted"
        )
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["kind"], top["layer"]) == ("ofi_call_failed:fi_domain", "host_software")


@pytest.mark.parametrize("rc", FI_ERRNO)
def test_every_fi_errno_completion_takes_the_catalogue_layer(tmp_path: Path, rc: int) -> None:
    entry = CATALOGUE["fi_errno"][rc]
    (tmp_path / "ip-10-1-2-3").mkdir()
    (tmp_path / "ip-10-1-2-3" / "nccl.log").write_text(
        f"ip-10-1-2-3:2271:2390 [3] nccl_net_ofi_rdma_process_completions:1120 NCCL WARN NET/OFI Request "
        f"0x7f456c224810 completed with error. RC: {rc}. Error: {entry['text']}. Completed length: 0\n"
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == (f"fi_errno:{rc}", entry["layer"], "ip-10-1-2-3")
