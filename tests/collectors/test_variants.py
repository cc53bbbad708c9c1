"""Generalisation: the line shapes of fleetscope/examples/incidents with what changes in the wild changed
(node
names, GPU indexes and bus ids, other Xids of the same class, timestamp forms, launcher prefixes, the
culprit on a later node, healthy noise around it). Each variant asserts the exact diagnosis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.collectors.judging import diagnose

XID = "NVRM: Xid (PCI:{bus}): {xid}, pid=3318842, name=python3, Ch 00000010"
STAMPS = {
    "uptime": "[221684.337896] {msg}",
    "dmesg -T": "[Tue Nov  4 07:43:02 2025] {msg}",
    "journald short-iso": "2025-11-04T07:43:02+0000 {node} kernel: {msg}",
    "syslog": "Nov  4 07:43:02 {node} kernel: {msg}",
    "iso-8601": "2025-11-04T07:43:02.512345Z {msg}",
    "none": "{msg}",
}
WATCHDOG = (
    "[PG ID 0 PG GUID 0(default_pg) Rank {rank}] Process group watchdog thread terminated with exception: "
    "[Rank {rank}] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=911207, OpType=ALLREDUCE, "
    "NumelIn=26214400, NumelOut=26214400, Timeout(ms)=600000) ran for 600117 milliseconds before timing out."
)
LAUNCHERS = {
    "mpirun": "[1,{rank}]<stderr>:",
    "torchrun": "[default{local}]:",
    "accelerate": "[rank{rank}]:",
    "srun": "{rank}: ",
    "none": "",
}
NCCL_INFO = (
    "{node}:2271:2390 [{local}] NCCL INFO Channel 00/0 : {rank}[{local}] -> {peer}[{local}] via P2P/IPC"
)
SMI_L = "GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-5b0c3e4a-0000-0000-0000-00000000000{i})"


def top(report: dict[str, Any]) -> tuple[Any, ...]:
    r = report["root_causes"][0]
    return (r["kind"], r["layer"], r["node"], r["gpu_pci_bus_id"])


def job_logs(nodes: list[str], launcher: str, silent_rank: int) -> dict[str, str]:
    """Watchdog timeouts on every rank but one, with NCCL INFO chatter, for 8 ranks per node."""
    files = {}
    for n, node in enumerate(nodes):
        lines = []
        for local in range(8):
            rank = 8 * n + local
            prefix = LAUNCHERS[launcher].format(rank=rank, local=local)
            lines.append(prefix + NCCL_INFO.format(node=node, local=local, rank=rank, peer=(rank + 1) % 24))
            if rank != silent_rank:
                lines.append(prefix + WATCHDOG.format(rank=rank))
        files[f"{node}/train.log"] = "\n".join(lines) + "\n"
        files[f"{node}/nvidia-smi-L.txt"] = "\n".join(SMI_L.format(i=i) for i in range(8)) + "\n"
    return files


@pytest.mark.parametrize(
    ("xid", "layer"),
    [
        *((x, "gpu_memory") for x in (48, 63, 64, 92, 94, 95)),
        *((x, "nvlink") for x in (74, 144, 145, 146, 147, 148, 149, 150)),
        *((x, "gpu_hardware") for x in (79, 119, 120)),
    ],
)
@pytest.mark.parametrize("stamp", sorted(STAMPS))
def test_an_xid_on_a_later_node_explains_the_job_hang(
    tmp_path: Path, xid: int, layer: str, stamp: str
) -> None:
    nodes = ["gpu-a01", "gpu-a02", "gpu-a17"]
    files = job_logs(nodes, "torchrun", silent_rank=21)
    for node in nodes:
        files[f"{node}/kern.log"] = (
            STAMPS[stamp].format(node=node, msg="NVRM: loading NVIDIA UNIX x86_64 Kernel Module  535.183.01")
            + "\n"
        )
    files["gpu-a17/kern.log"] += (
        STAMPS[stamp].format(node="gpu-a17", msg=XID.format(bus="0000:c1:00", xid=xid)) + "\n"
    )
    report = diagnose(tmp_path, files)
    assert top(report) == (f"xid:{xid}", layer, "gpu-a17", "0000:c1:00.0")
    assert any(s["kind"].startswith("c10d_watchdog_timeout") for s in report["symptoms"])


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_watchdog_symptoms_under_every_launcher_point_at_the_xid(tmp_path: Path, launcher: str) -> None:
    nodes = ["ip-10-1-2-3", "ip-10-1-2-4"]
    files = job_logs(nodes, launcher, silent_rank=13)
    files["ip-10-1-2-4/dmesg.log"] = "[ 9912.120034] " + XID.format(bus="0000:9a:00", xid=119) + "\n"
    report = diagnose(tmp_path, files)
    assert top(report) == ("xid:119", "gpu_hardware", "ip-10-1-2-4", "0000:9a:00.0")
    watchdog = [s for s in report["symptoms"] if s["kind"].startswith("c10d_watchdog_timeout")]
    assert watchdog and watchdog[0]["explained_by"] == 0


def test_application_xids_on_one_gpu_do_not_outrank_a_memory_xid_on_another(tmp_path: Path) -> None:
    kern = "".join(
        f"[ 5123.00000{i}] " + XID.format(bus=bus, xid=xid) + "\n"
        for i, (bus, xid) in enumerate(
            [("0000:18:00", 13), ("0000:18:00", 43), ("0000:db:00", 63), ("0000:18:00", 31)]
        )
    )
    report = diagnose(tmp_path, {"gpu-b07/kern.log": kern})
    assert top(report) == ("xid:63", "gpu_memory", "gpu-b07", "0000:db:00.0")


def test_healthy_noise_alone_is_no_incident(tmp_path: Path) -> None:
    files = job_logs(["gpu-a01", "gpu-a02"], "mpirun", silent_rank=-1)
    files = {
        rel: "\n".join(ln for ln in text.splitlines() if "Watchdog" not in ln) + "\n"
        for rel, text in files.items()
    }
    files["gpu-a01/kern.log"] = "[   11.771032] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  535.183.01\n"
    assert diagnose(tmp_path, files)["incident"] is False


@pytest.mark.parametrize("gpu", [0, 3, 7])
def test_the_bus_id_maps_to_the_index_from_a_real_nvidia_smi_q_on_the_same_node(
    tmp_path: Path, gpu: int
) -> None:
    buses = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]
    query = (
        Path(__file__).resolve().parent.parent
        / "fixtures"
        / "nvidia-smi"
        / "h100-sxm-80gb-x8_drv565.57.01.txt"
    ).read_text()
    files = {
        "gpu-a17/nvidia-smi-q.txt": query,
        "gpu-a17/kern.log": "[ 812.5] " + XID.format(bus=f"0000:{buses[gpu]}:00", xid=94) + "\n",
    }
    report = diagnose(tmp_path, files)
    r = report["root_causes"][0]
    assert (r["kind"], r["node"], r["gpu"], r["gpu_pci_bus_id"]) == (
        "xid:94",
        "gpu-a17",
        gpu,
        f"0000:{buses[gpu]}:00.0",
    )
