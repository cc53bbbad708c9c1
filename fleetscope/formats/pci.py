"""PCI bus ids in one spelling, so NVML's, the kernel log's, DCGM's and NCCL's ids can be matched."""

from __future__ import annotations

import re

# NVML: "00000000:3B:00.0" (32-bit domain); kernel Xid lines: "PCI:0000:3b:00" or "0000:3b:00" (no
# function); sysfs and lspci: "0000:3b:00.0"; nvidia-smi's table and lspci without -D: "3b:00.0".
_BUS_ID = re.compile(
    r"(?:PCI:)?(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<device>[0-9a-fA-F]{2})"
    r"(?:\.(?P<function>[0-7]))?"
)
# NCCL's "busId 3b000": domain, bus, device (two hex digits each but the domain) and function (one).
_NCCL_BUS_ID = re.compile(r"[0-9a-fA-F]{4,12}")


def canonical_bus_id(text: str | bytes) -> str | None:
    """Return the Linux sysfs spelling ``dddd:bb:dd.f`` (lower case) of a PCI bus id.

    Args:
        text: A bus id as NVML (``00000000:3B:00.0``), the kernel log (``PCI:0000:3b:00``,
            ``0000:3b:00``), sysfs (``0000:3b:00.0``), nvidia-smi's table (``3B:00.0``) or NCCL
            (``busId 3b000``) writes it. A missing domain means 0, a missing function means 0 (the GPU's
            function on every NVIDIA board).

    Returns:
        The canonical id, or ``None`` if ``text`` is not a bus id.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.strip()
    m = _BUS_ID.fullmatch(text)
    if m is not None:
        domain = int(m["domain"], 16) if m["domain"] else 0
        return f"{domain:04x}:{m['bus'].lower()}:{m['device'].lower()}.{m['function'] or '0'}"
    if _NCCL_BUS_ID.fullmatch(text):
        value = int(text, 16)
        return f"{value >> 20:04x}:{(value >> 12) & 0xFF:02x}:{(value >> 4) & 0xFF:02x}.{value & 0xF:x}"
    return None
