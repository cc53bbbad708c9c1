"""PCI bus ids in one spelling, so NVML's and the kernel log's ids can be matched."""

from __future__ import annotations

import re

# NVML: "00000000:3B:00.0" (32-bit domain); kernel Xid lines: "PCI:0000:3b:00" (no function);
# sysfs and lspci: "0000:3b:00.0".
_BUS_ID = re.compile(
    r"(?:PCI:)?(?P<domain>[0-9a-fA-F]{4,8}):(?P<bus>[0-9a-fA-F]{2}):(?P<device>[0-9a-fA-F]{2})"
    r"(?:\.(?P<function>[0-7]))?"
)


def canonical_pci_bus_id(text: str | bytes) -> str | None:
    """Return the Linux sysfs spelling ``dddd:bb:dd.f`` (lower case) of a PCI bus id.

    Args:
        text: A bus id as NVML (``nvmlDeviceGetPciInfo().busId``, ``00000000:3B:00.0``), the kernel log
            (``PCI:0000:3b:00``) or sysfs (``0000:3b:00.0``) writes it; a missing function means 0,
            which is the GPU's function on every NVIDIA board.

    Returns:
        The canonical id, or ``None`` if ``text`` is not a bus id.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    m = _BUS_ID.fullmatch(text.strip())
    if m is None:
        return None
    domain = int(m["domain"], 16)
    return f"{domain:04x}:{m['bus'].lower()}:{m['device'].lower()}.{m['function'] or '0'}"
