"""DCGM: nv-hostengine health-watch messages, ``dcgmi health -c`` reports and ``dcgmi diag`` results.

nv-hostengine logs a health incident as ``Detected a WARNING in health system Thermal: '...GPU 2...'``
(DCGM's ``DcgmHealthWatch``). ``dcgmi health -c`` prints a table: ``| Overall Health: Warning |``, then
per GPU a ``| GPU ID: 2 | Warning |`` row followed by ``| | Thermal system: Warning - <message> |``
rows (the message wraps onto rows that carry no keyword; its first row is kept). ``dcgmi diag -r N``
prints one row per test: ``| PCIe | Fail - GPU: 2 |`` (or ``Pass - All``, ``Warn - GPU: 0, 1``,
``Skip``). Only warnings and failures become evidence; a healthy table is no evidence at all. DCGM GPU
ids are NVML indexes. Both tables become the same ``dcgm_health`` evidence as the hostengine line, and
``dcgm_diag`` evidence for diag rows.
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
#: ``| PCIe                      | Fail - GPU: 2 |``.
_DIAG_ROW = re.compile(
    r"^\|\s*(?P<test>[A-Za-z][\w /.()-]*?)\s*\|\s*(?P<result>Fail|Warn)\b"
    r"(?:\s*-\s*(?:GPU:?\s*(?P<gpus>\d+(?:\s*,\s*\d+)*)|(?P<all>All)))?"
)


class DcgmParser(LineParser):
    """DCGM health-watch incidents, ``dcgmi health -c`` tables and ``dcgmi diag`` result tables."""

    name = "dcgm"
    keywords = ("health system", "GPU ID:", " system: ", "| Fail", "| Warn")

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
        m = _DIAG_ROW.match(body)
        if m is None or m["test"] in ("Warning", "Info", "Error"):
            return ()
        gpus: list[int | None] = [int(g) for g in re.split(r"\s*,\s*", m["gpus"])] if m["gpus"] else [None]
        return [
            self.ctx.evidence(
                line,
                "dcgm_diag",
                gpu=gpu,
                severity="error" if m["result"] == "Fail" else "warning",
                attrs={"test": m["test"], "result": m["result"].upper()},
            )
            for gpu in gpus
        ]

    def _health(self, line: Line, gpu: str | int | None, system: str, level: str, msg: str) -> Evidence:
        level = level.upper()
        return self.ctx.evidence(
            line,
            "dcgm_health",
            gpu=int(gpu) if gpu is not None else None,
            severity="error" if level in ("FAILURE", "ERROR") else "warning",
            attrs={"system": system.strip(), "level": level, "message": msg},
        )
