"""GPU indexes: the driver's own instance number stands in only where no file maps the bus id."""

from __future__ import annotations

from pathlib import Path

from tests.collectors.judging import diagnose

XID119 = (
    "[221684.337896] NVRM: Xid (PCI:0000:5d:00): 119, pid=3318842, name=python, Timeout after 45s of "
    "waiting for RPC response from GPU3 GSP! Expected function 76 (GSP_RM_CONTROL) (0x20801702 0x4).\n"
)
#: ``nvidia-smi -L`` with UUIDs and ``nvidia-smi -q`` would give a real map; ``--query-gpu`` CSV does too.
QUERY_CSV = "index, pci.bus_id\n0, 00000000:5D:00.0\n1, 00000000:9A:00.0\n"


def test_driver_instance_number_is_the_index_when_nothing_maps_the_bus(tmp_path: Path) -> None:
    out = diagnose(tmp_path, {"node-02/dmesg.log": XID119})
    top = out["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"], top["gpu_pci_bus_id"]) == (
        "xid:119",
        "node-02",
        3,
        "0000:5d:00.0",
    )
    assert top["summary"] == (
        "Xid 119 (GSP RPC Timeout) on GPU 3 (0000:5d:00.0; index from the driver's numbering, no nvidia-smi "
        "mapping in the bundle) on node-02"
    )


def test_a_real_mapping_wins_over_the_driver_number(tmp_path: Path) -> None:
    out = diagnose(tmp_path, {"node-02/dmesg.log": XID119, "node-02/gpus.csv": QUERY_CSV})
    top = out["root_causes"][0]
    assert (top["gpu"], top["gpu_pci_bus_id"]) == (0, "0000:5d:00.0")
    assert top["summary"] == "Xid 119 (GSP RPC Timeout) on GPU 0 (0000:5d:00.0) on node-02"


def test_driver_number_never_takes_an_index_mapped_to_another_gpu(tmp_path: Path) -> None:
    csv = "index, pci.bus_id\n3, 00000000:18:00.0\n"
    out = diagnose(tmp_path, {"node-02/dmesg.log": XID119, "node-02/gpus.csv": csv})
    top = out["root_causes"][0]
    assert (top["gpu"], top["gpu_pci_bus_id"]) == (None, "0000:5d:00.0")
