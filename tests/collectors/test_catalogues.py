"""Every Xid NVIDIA documents and every InfiniBand work-completion status is read and classified.

The expected layer and role come from the reviewed catalogues, so a new catalogue entry is tested too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetscope.collectors import investigate, knowledge

XIDS = sorted(knowledge.load("xid.yaml")["xids"])
STATUSES = sorted(c for c in knowledge.load("ib_wc_status.yaml")["statuses"] if c != 0)


@pytest.mark.parametrize("number", XIDS)
def test_every_catalogued_xid(tmp_path: Path, number: int) -> None:
    entry = knowledge.xid(number)
    assert entry is not None
    node = tmp_path / "node-07"
    node.mkdir()
    (node / "kern.log").write_text(
        f"[ 5123.000001] NVRM: Xid (PCI:0000:c1:00): {number}, pid=4242, name=python3, {entry['name']}\n"
    )
    out = investigate(tmp_path).to_dict()
    top = out["root_causes"][0]
    assert (top["node"], top["gpu_pci_bus_id"], top["kind"]) == ("node-07", "0000:c1:00.0", f"xid:{number}")
    assert top["layer"] == entry["layer"]
    if entry.get("consequence_of_other") or entry.get("origin") == "consequence":
        # Alone, a consequence is still the answer, but an unsure one.
        assert top["confidence"] <= 0.3 and top["certainty"] == "unsure"
    else:
        assert top["confidence"] > 0.3 and top["certainty"] != "unsure"


@pytest.mark.parametrize("status", STATUSES)
def test_every_ib_work_completion_status(tmp_path: Path, status: int) -> None:
    entry = knowledge.ib_wc_status(status)
    assert entry is not None
    (tmp_path / "node-02").mkdir()
    (tmp_path / "node-02" / "nccl.log").write_text(
        f"node-02:35:89 [5] transport/net_ib.cc:1296 NCCL WARN NET/IB : Got completion from peer "
        f"10.0.0.9<39138> with error {status}, opcode 0, len 0, vendor err 129\n"
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == (f"ib_wc_status:{status}", entry["layer"], "node-02")
    assert entry["name"] in top["summary"]
