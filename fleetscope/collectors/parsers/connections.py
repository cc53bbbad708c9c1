"""Connections that drop and come back: Lustre and NFS servers, network links.

Each message becomes ``connection_event`` evidence: ``subsystem`` (``lustre``, ``nfs``, ``link``),
``target`` (what was lost: the Lustre import, the NFS server, the interface), ``server`` where named, and
``state`` (``lost`` or ``restored``). Whether a loss is a fault or a blip is the connections detector's
call, from what follows it.

=========  ==============================================================  ================================
subsystem  lost                                                            restored
=========  ==============================================================  ================================
lustre     ``Lustre: <import>: Connection to <target> (at <nid>) was       ``Lustre: <import>: Connection
           lost; in progress operations ... will wait for recovery``       restored to <nid> (at <nid>)``
nfs        ``nfs: server <host> not responding, still trying`` (or         ``nfs: server <host> OK``
           ``timed out``)
link       ``<dev>: Link down`` (mlx5e), ``<dev>: NIC Link is Down``       ``Link up``, ``NIC Link is Up``
           (Intel, Broadcom drivers)
=========  ==============================================================  ================================

Sources: Lustre ptlrpc import messages (``ptlrpc_connection_lost`` / ``ptlrpc_import_recovery_state_machine``
in lustre/ptlrpc/import.c), Linux fs/nfs/client.c and clnt.c (``nfs: server %s not responding, still
trying`` / ``nfs: server %s OK``), mlx5 ``mlx5e_update_carrier`` and the Intel/Broadcom drivers' link
messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import Line, LineParser

#: A network interface name, whole; NVLink and NVSwitch link messages (NVRM, nvidia-nvswitch) are the
#: nvlink detector's.
_INTERFACE = r"(?<![\w.:-])(?P<target>(?![Nn][Vv])[\w.:-]+)"
_SHAPES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "lustre",
        "lost",
        re.compile(r"Lustre: (?P<target>\S+): Connection to \S+ \(at (?P<server>[^)]+)\) was lost"),
    ),
    ("lustre", "restored", re.compile(r"Lustre: (?P<target>\S+): Connection restored to (?P<server>\S+)")),
    ("nfs", "lost", re.compile(r"nfs: server (?P<target>\S+) (?:not responding|timed out)")),
    ("nfs", "restored", re.compile(r"nfs: server (?P<target>\S+) OK\b")),
    ("link", "lost", re.compile(_INTERFACE + r": (?:Link down|NIC Link is Down)\b")),
    ("link", "restored", re.compile(_INTERFACE + r": (?:Link up|NIC Link is Up)\b")),
)


class ConnectionStateParser(LineParser):
    """Lustre, NFS and network-link connections lost and restored."""

    name = "connections"
    keywords = (
        ") was lost",
        "Connection restored to",
        "nfs: server ",
        ": Link down",
        ": Link up",
        "NIC Link is Down",
        "NIC Link is Up",
    )

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        for subsystem, state, pattern in _SHAPES:
            m = pattern.search(body)
            if m is None:
                continue
            groups = m.groupdict()
            return (
                self.ctx.evidence(
                    line,
                    "connection_event",
                    severity="warning" if state == "lost" else "info",
                    layer="network" if subsystem == "link" else "storage",
                    attrs={
                        "subsystem": subsystem,
                        "state": state,
                        "target": groups["target"],
                        "server": groups.get("server"),
                    },
                ),
            )
        return ()
