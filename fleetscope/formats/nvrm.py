"""The NVIDIA driver's kernel-log messages (``NVRM: ...``) that name a GPU.

Shapes follow the open GPU kernel modules' ``nvErrorLog``/``nv_printf`` formats:

* ``NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.`` — older drivers
  and some tools drop the ``PCI:`` (``NVRM: Xid (0000:3b:00): 79``); ``pid`` and ``name`` may be absent,
  ``pid`` may be ``'<unknown>'``.
* ``NVRM: GPU at PCI:0000:3b:00: GPU-...`` and ``NVRM: The NVIDIA GPU 0000:3b:00.0 ... has fallen off the
  bus`` — a GPU named outside an Xid line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetscope.formats.pci import canonical_bus_id

_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9a-fA-F:.]+)\): (?P<xid>\d+)\b"
    r"(?:, pid=(?P<pid>'?<?[\w]+>?'?))?(?:, name=(?P<name>[^,]+))?(?:, (?P<msg>.*))?"
)
#: Any line that means to be an Xid report (to tell a malformed one from other NVRM lines).
XID_MENTION = re.compile(r"NVRM: Xid\b")
#: ``NVRM: [The NVIDIA ]GPU [at ][PCI:]<bus id>``: a GPU named by its bus id; ``pci`` is the id as written.
GPU_NAMED = re.compile(
    r"NVRM: (?:The NVIDIA )?GPU (?:at )?(?:PCI:)?"
    r"(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)"
)
#: The words of a fallen-off-the-bus report (with or without an Xid, on the line of the GPU or later).
FALLEN_OFF_BUS = re.compile(r"fallen off the bus", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class XidLine:
    """One Xid report.

    Attributes:
        bus_id: Canonical PCI bus id (:func:`~fleetscope.formats.pci.canonical_bus_id`), or ``None`` if
            the parenthesis holds no bus id.
        xid: The Xid number.
        pid: The process id as written (``1234``, ``'<unknown>'``), or ``None``.
        process: The process name, or ``None``.
        detail: The rest of the message (without a trailing full stop or quote), or ``""``.
    """

    bus_id: str | None
    xid: int
    pid: str | None
    process: str | None
    detail: str


def parse_xid(message: str) -> XidLine | None:
    """Read the Xid report in a kernel-log message.

    Args:
        message: The message (a whole line may be given; the report is searched for).

    Returns:
        The report, or ``None`` if the message holds no well-formed ``NVRM: Xid (<bus id>): <N>``.
    """
    m = _XID.search(message)
    if m is None:
        return None
    return XidLine(
        bus_id=canonical_bus_id(m["bus"]),
        xid=int(m["xid"]),
        pid=m["pid"],
        process=m["name"],
        detail=(m["msg"] or "").strip().rstrip('."').strip(),
    )
