"""One grammar per format: the exporter's Xid watcher and the engine's kernel-log parser read the same
NVRM lines and bus ids the same way (both use :mod:`fleetscope.formats`)."""

from __future__ import annotations

import pytest

from fleetscope.collectors.parsers import FileContext, Line
from fleetscope.collectors.parsers.kernel import KernelLogParser as EngineKernelParser
from fleetscope.collectors.prefixes import split_prefixes
from fleetscope.exporters.pci import canonical_pci_bus_id
from fleetscope.exporters.xid import KernelLogParser as ExporterKernelParser
from fleetscope.formats import canonical_bus_id, parse_xid

LINES = [
    # (line, bus id both must read, Xid)
    (
        "[ 5.1] NVRM: Xid (PCI:0000:3b:00): 79, pid=7, name=python, GPU has fallen off the bus.",
        "0000:3b:00.0",
        79,
    ),
    (
        "[ 5.1] NVRM: Xid (0000:3b:00): 79, pid=7, name=python, GPU has fallen off the bus.",
        "0000:3b:00.0",
        79,
    ),
    ("[ 5.1] NVRM: Xid (PCI:0000:3B:00.0): 48, pid='<unknown>', name=<unknown>, DBE", "0000:3b:00.0", 48),
    ("6,1234,5100000,-;NVRM: Xid (PCI:00000018:01:00): 13, Graphics Exception", "0018:01:00.0", 13),
    ("[ 5.1] NVRM: Xid (3b:00.0): 94, pid=9, Contained ECC error", "0000:3b:00.0", 94),
]


@pytest.mark.parametrize(("line", "bus", "xid"), LINES)
def test_exporter_and_engine_read_an_xid_line_alike(line: str, bus: str, xid: int) -> None:
    exporter = ExporterKernelParser()
    events = exporter.feed(line.encode())
    assert [(e["kind"], e["pci_bus_id"], e["xid"]) for e in events] == [("xid", bus, xid)]
    engine = EngineKernelParser(FileContext(rel="node-01/dmesg", node="node-01"))
    found = [*engine.feed(Line(1, line, split_prefixes(line))), *engine.finish()]
    assert [(e.kind, e.gpu_pci_bus_id, e.attrs["xid"]) for e in found] == [("xid", bus, xid)]


def test_a_malformed_xid_line_is_malformed_to_both() -> None:
    line = "[ 5.1] NVRM: Xid (PCI:zz): 79, pid=7"
    assert ExporterKernelParser().feed(line.encode())[0]["kind"] == "malformed"
    engine = EngineKernelParser(FileContext(rel="node-01/dmesg", node="node-01"))
    assert [*engine.feed(Line(1, line, split_prefixes(line))), *engine.finish()] == []
    assert parse_xid(line) is None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0000:3b:00", "0000:3b:00.0"),
        ("PCI:0000:3b:00", "0000:3b:00.0"),
        ("00000000:3B:00.0", "0000:3b:00.0"),
        ("3b:00.0", "0000:3b:00.0"),
        ("3b000", "0000:3b:00.0"),  # NCCL's busId
        ("5d000", "0000:5d:00.0"),
        ("GPU", None),
        ("", None),
    ],
)
def test_one_bus_id_normaliser(text: str, canonical: str | None) -> None:
    assert canonical_bus_id(text) == canonical
    assert canonical_pci_bus_id(text) == canonical
    assert canonical_bus_id(text.encode()) == canonical
