"""PCI bus ids in one spelling, so NVML's and the kernel log's ids can be matched.

The grammar is :mod:`fleetscope.formats.pci`'s, shared with the correlation engine; this module keeps the
exporter's name for it.
"""

from __future__ import annotations

from fleetscope.formats.pci import canonical_bus_id as canonical_pci_bus_id

__all__ = ["canonical_pci_bus_id"]
