"""Grammars of the formats several packages read, written once: PCI bus ids and the kernel log's NVRM
and ``/dev/kmsg`` lines.

The lowest package of fleetscope: it imports nothing of ours, and both ``fleetscope.exporters`` (the Xid
watcher) and ``fleetscope.collectors`` (the kernel-log parser) import it, so the exporter's counters and
the engine's diagnosis read the same lines the same way.
"""

from __future__ import annotations

from fleetscope.formats.kmsg import KMSG_RECORD
from fleetscope.formats.nvrm import FALLEN_OFF_BUS, GPU_NAMED, XID_MENTION, XidLine, parse_xid
from fleetscope.formats.pci import canonical_bus_id

__all__ = [
    "FALLEN_OFF_BUS",
    "GPU_NAMED",
    "KMSG_RECORD",
    "XID_MENTION",
    "XidLine",
    "canonical_bus_id",
    "parse_xid",
]
