"""PyTorch distributed (c10d) errors and Python exceptions.

The c10d watchdog's message (torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp, ``checkTimeout``)::

    [Rank 5] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=911207, OpType=ALLREDUCE,
    NumelIn=26214400, NumelOut=26214400, Timeout(ms)=1800000) ran for 1800302 milliseconds before timing out.

gives the rank, the collective's sequence number and type, and the timeout. NCCL result codes
(``ncclRemoteError`` ...) name the failing layer's family; the last line of a Python traceback names
the exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import Line, LineParser

_WATCHDOG = re.compile(
    r"Watchdog caught collective operation timeout: WorkNCCL\(SeqNum=(?P<seq>\d+), OpType=(?P<op>\w+)"
    r"(?:, NumelIn=(?P<numel_in>\d+), NumelOut=(?P<numel_out>\d+))?, Timeout\(ms\)=(?P<timeout>\d+)\)"
    r"(?: ran for (?P<ran>\d+) milliseconds)?"
)
_RANK = re.compile(r"\bRank (\d+)\]")
_NCCL_RESULT = re.compile(
    r"\b(ncclUnhandledCudaError|ncclSystemError|ncclInternalError|ncclInvalidArgument|ncclInvalidUsage"
    r"|ncclRemoteError|ncclInProgress)\b"
)
_FAILED_OR_TIMED_OUT = "Some NCCL operations have failed or timed out"
_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*(?P<type>[A-Z]\w*(?:Error|Exception|Interrupt))(?:: (?P<msg>.*))?$"
)


class PyTorchParser(LineParser):
    """c10d watchdog timeouts, NCCL result codes and exception lines."""

    name = "pytorch"
    keywords = (
        "Watchdog caught",
        "ncclUnhandledCudaError",
        "ncclSystemError",
        "ncclInternalError",
        "ncclInvalid",
        "ncclRemoteError",
        "ncclInProgress",
        _FAILED_OR_TIMED_OUT,
        "Error",
        "Exception",
    )

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        out: list[Evidence] = []
        m = _WATCHDOG.search(body)
        if m:
            rank = _RANK.search(body)
            attrs = {
                "seq": int(m["seq"]),
                "op": m["op"],
                "timeout_ms": int(m["timeout"]),
                "ran_ms": int(m["ran"]) if m["ran"] else None,
                "numel_in": int(m["numel_in"]) if m["numel_in"] else None,
                "numel_out": int(m["numel_out"]) if m["numel_out"] else None,
            }
            if rank:
                attrs["rank"] = int(rank.group(1))
            out.append(self.ctx.evidence(line, "c10d_watchdog_timeout", severity="error", attrs=attrs))
            return out
        m = _NCCL_RESULT.search(body)
        if m:
            out.append(self.ctx.evidence(line, "nccl_result", severity="error", attrs={"result": m.group(1)}))
        elif _FAILED_OR_TIMED_OUT in body:
            out.append(self.ctx.evidence(line, "nccl_failed_or_timed_out", severity="error"))
        m = _EXCEPTION.match(body.strip())
        if m:
            out.append(
                self.ctx.evidence(
                    line,
                    "exception",
                    severity="error",
                    attrs={"type": m["type"], "message": (m["msg"] or "").strip()},
                )
            )
        return out
