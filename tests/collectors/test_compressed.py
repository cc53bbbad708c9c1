"""Compressed logs in a bundle are read like plain ones; a broken archive is reported, never fatal."""

from __future__ import annotations

import gzip
from pathlib import Path

from fleetscope.collectors import investigate

XID79 = (
    "[ 1843.308145] NVRM: Xid (PCI:0000:b3:00): 79, pid='<unknown>', name=<unknown>, "
    "GPU has fallen off the bus.\n"
)
CHATTER = "".join(f"[ {100 + i}.000000] eth0: link up, 100Gbps\n" for i in range(2000))


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    node = tmp_path / "gpu-a17"
    node.mkdir()
    # A gzip stream under a name that says nothing about compression.
    (node / "bug-report").write_bytes(gzip.compress((CHATTER + XID79 + CHATTER).encode()))
    result = investigate(tmp_path)
    top = result.to_dict()["root_causes"][0]
    assert (top["layer"], top["node"], top["gpu_pci_bus_id"]) == ("gpu_hardware", "gpu-a17", "0000:b3:00.0")
    assert top["evidence"][0]["source"] == "gpu-a17/bug-report:2001"


def test_a_truncated_archive_keeps_what_was_read_and_says_so(tmp_path: Path) -> None:
    node = tmp_path / "node-01"
    node.mkdir()
    whole = gzip.compress((XID79 + CHATTER * 20).encode())
    (node / "kern.log.1.gz").write_bytes(whole[: len(whole) // 2])
    result = investigate(tmp_path)
    assert result.to_dict()["root_causes"][0]["gpu_pci_bus_id"] == "0000:b3:00.0"
    assert any(
        note.startswith("node-01/kern.log.1.gz: could not be parsed (EOFError")
        for note in result.unparsed.notes
    )
