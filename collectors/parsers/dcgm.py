"""DCGM: nv-hostengine health-watch messages and ``dcgmi health -c`` reports.

nv-hostengine logs a health incident as ``Detected a WARNING in health system Thermal: '...GPU 2...'``
(DCGM's ``DcgmHealthWatch``); ``dcgmi health -c`` prints ``| GPU ID: 2 | Warning |`` blocks followed by
the system and message. DCGM GPU ids are NVML indexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from collectors.evidence import Evidence
from collectors.parsers.base import Line, LineParser

_HEALTH = re.compile(
    r"Detected an? (?P<level>WARNING|FAILURE|ERROR) in health system (?P<system>[\w ]+?): '?(?P<msg>.*?)'?$",
    re.IGNORECASE,
)
_GPU = re.compile(r"\bGPU (?:ID:? ?)?(\d+)\b")


class DcgmParser(LineParser):
    """DCGM health-watch incidents."""

    name = "dcgm"
    keywords = ("health system",)

    def feed(self, line: Line) -> Iterable[Evidence]:
        m = _HEALTH.search(line.pre.body)
        if m is None:
            return ()
        gpu = _GPU.search(m["msg"])
        level = m["level"].upper()
        return (
            self.ctx.evidence(
                line,
                "dcgm_health",
                gpu=int(gpu.group(1)) if gpu else None,
                severity="error" if level in ("FAILURE", "ERROR") else "warning",
                attrs={"system": m["system"].strip(), "level": level, "message": m["msg"]},
            ),
        )
