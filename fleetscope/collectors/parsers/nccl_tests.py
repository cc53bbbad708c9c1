"""nccl-tests output (``all_reduce_perf`` and friends).

Reads the summary lines the tests print at the end (``#  Avg bus bandwidth    : 182.3`` and
``# Out of bounds values : 0 OK``) and each result row's ``#wrong`` columns (out-of-place and in-place),
which count elements that came back with the wrong value: data corruption on the path between GPUs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import Line, LineParser

_BUSBW = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*(?P<value>\d+(?:\.\d+)?)\b(?!\.)")
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(?P<count>\d+)\s+(?P<verdict>OK|FAILED)")
# size count type redop root | time algbw busbw #wrong | time algbw busbw #wrong
_ROW = re.compile(
    r"^\s*(?P<size>\d+)\s+(?P<count>\d+)\s+(?P<type>\w+)\s+(?P<redop>\w+)\s+-?\d+"
    r"\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(?P<wrong_out>\d+|N/A)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(?P<wrong_in>\d+|N/A)\s*$"
)


class NcclTestsParser(LineParser):
    """Bus bandwidth, out-of-bounds verdict and wrong-value counts of nccl-tests."""

    name = "nccl-tests"
    keywords = ("Avg bus bandwidth", "Out of bounds values", " float ", " half ", " bfloat16 ", " double ")

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        m = _BUSBW.match(body)
        if m:
            return (self.ctx.evidence(line, "nccl_tests_busbw", attrs={"gb_per_s": float(m["value"])}),)
        m = _OOB.match(body)
        if m:
            failed = m["verdict"] == "FAILED"
            return (
                self.ctx.evidence(
                    line,
                    "nccl_tests_wrong_values",
                    severity="error" if failed else "info",
                    attrs={"count": int(m["count"]), "size_bytes": None},
                ),
            )
        m = _ROW.match(body)
        if m:
            wrong = sum(int(v) for v in (m["wrong_out"], m["wrong_in"]) if v.isdigit())
            if wrong:
                return (
                    self.ctx.evidence(
                        line,
                        "nccl_tests_wrong_values",
                        severity="error",
                        attrs={"count": wrong, "size_bytes": int(m["size"])},
                    ),
                )
        return ()
