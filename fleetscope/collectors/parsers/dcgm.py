"""DCGM: nv-hostengine health-watch messages and ``dcgmi health -c`` reports.

nv-hostengine logs a health incident as ``Detected a WARNING in health system Thermal: '...GPU 2...'``
(DCGM's ``DcgmHealthWatch``). ``dcgmi health -c`` prints a table: ``| Overall Health: Warning |``, then
per GPU a ``| GPU ID: 2 | Warning |`` row followed by ``| | Thermal system: Warning - <message> |``
rows (the message wraps onto rows that carry no keyword; its first row is kept). Only warnings and
failures become evidence; a healthy table is no evidence at all. DCGM GPU ids are NVML indexes. The table
becomes the same ``dcgm_health`` evidence as the hostengine line. ``dcgmi diag`` results are
:mod:`fleetscope.collectors.parsers.dcgmi_diag`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import FileContext, Line, LineParser

_HEALTH = re.compile(
    r"Detected an? (?P<level>WARNING|FAILURE|ERROR) in health system (?P<system>[\w ]+?): '?(?P<msg>.*?)'?$",
    re.IGNORECASE,
)
_GPU = re.compile(r"\bGPU (?:ID:? ?)?(\d+)\b")
#: ``| GPU ID: 2        | Warning |``: the GPU the rows below it are about.
_CHECK_GPU = re.compile(r"^\|\s*GPU ID:\s*(?P<gpu>\d+)\s*\|\s*(?P<level>\w+)")
#: ``|     | Thermal system: Warning - <message> |``.
_CHECK_SYSTEM = re.compile(
    r"^\|[^|]*\|\s*(?P<system>[A-Za-z][\w ]*?) system: (?P<level>Warning|Failure|Healthy)\b(?: - )?"
    r"(?P<msg>[^|]*)\|?\s*$"
)


class DcgmParser(LineParser):
    """DCGM health-watch incidents and ``dcgmi health -c`` tables."""

    name = "dcgm"
    keywords = ("health system", "GPU ID:", " system: ")

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._check_gpu: int | None = None

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body.strip()
        m = _HEALTH.search(body)
        if m is not None:
            gpu = _GPU.search(m["msg"])
            return (self._health(line, gpu.group(1) if gpu else None, m["system"], m["level"], m["msg"]),)
        if body.startswith("|"):
            return self._table_row(line, body)
        return ()

    def _table_row(self, line: Line, body: str) -> Iterable[Evidence]:
        m = _CHECK_GPU.match(body)
        if m is not None:
            self._check_gpu = int(m["gpu"])
            return ()
        m = _CHECK_SYSTEM.match(body)
        if m is not None:
            if m["level"] == "Healthy":
                return ()
            named = _GPU.search(m["msg"])
            gpu = named.group(1) if named else self._check_gpu
            return (self._health(line, gpu, m["system"], m["level"], m["msg"].strip()),)
        return ()

    def _health(self, line: Line, gpu: str | int | None, system: str, level: str, msg: str) -> Evidence:
        level = level.upper()
        return self.ctx.evidence(
            line,
            "dcgm_health",
            gpu=int(gpu) if gpu is not None else None,
            severity="error" if level in ("FAILURE", "ERROR") else "warning",
            attrs={"system": system.strip(), "level": level, "message": msg},
        )
