"""The address a node's NCCL bootstrap uses, which maps a peer named by address back to its node.

NCCL prints it once per process (src/bootstrap.cc, ``NCCL INFO Bootstrap : Using eth0:10.0.0.5<0>``;
``Bootstrap: Using`` in newer releases). Each becomes ``host_address`` evidence (``address``, ``interface``)
on the node of the file, or the host of NCCL's line header in a cluster-wide file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import Line, LineParser

_USING = re.compile(
    r"(?:(?P<host>[\w.-]+):\d+:\d+ \[\d+\] )?NCCL INFO Bootstrap ?: Using (?P<iface>[\w.-]+):"
    r"(?P<address>[0-9a-fA-F:.]+)<\d+>"
)


class HostAddressParser(LineParser):
    """NCCL bootstrap addresses."""

    name = "host-address"
    keywords = ("Bootstrap : Using", "Bootstrap: Using")

    def feed(self, line: Line) -> Iterable[Evidence]:
        m = _USING.search(line.text)
        if m is None:
            return ()
        node = self.ctx.node or m["host"] or line.pre.host
        attrs = {"address": m["address"], "interface": m["iface"]}
        return (self.ctx.evidence(line, "host_address", node=node, attrs=attrs),)
