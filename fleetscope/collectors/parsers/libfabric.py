"""libfabric's own log lines (``FI_LOG_LEVEL=warn``), as the EFA provider prints them.

Shape (libfabric ``fi_log`` default format): ``libfabric:pid:epoch::provider:subsystem:func():line<level>
message``, e.g. ``libfabric:35:1668017255::efa:cq:rxr_cq_write_tx_error():243<warn> rxr_cq_write_tx_error:
err: 20, prov_err: Not a directory (20)``. The epoch second gives the time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import Line, LineParser

_LINE = re.compile(
    r"libfabric:(?P<pid>\d+):(?P<epoch>\d+)::(?P<prov>[\w;-]*):(?P<subsys>\w*):(?P<func>[\w]+)\(\):(?P<ln>\d+)"
    r"<(?P<level>\w+)> (?P<msg>.*)"
)
_ERR = re.compile(r"\berr(?:no)?: ?(?P<err>-?\d+)(?:, prov_err(?:no)?: ?(?P<prov_err>.*))?")


class LibfabricParser(LineParser):
    """libfabric warnings and errors, with errno and provider error."""

    name = "libfabric"
    keywords = ("libfabric:",)

    def feed(self, line: Line) -> Iterable[Evidence]:
        m = _LINE.search(line.pre.body)
        if m is None or m["level"] not in ("warn", "error", "warning"):
            return ()
        attrs: dict = {"provider": m["prov"], "function": m["func"], "message": m["msg"].strip()}
        err = _ERR.search(m["msg"])
        if err:
            attrs["errno"] = abs(int(err["err"]))
            attrs["prov_err"] = (err["prov_err"] or "").strip()
        e = self.ctx.evidence(line, "libfabric_warn", severity="warning", attrs=attrs)
        if e.time is None:
            e.time = datetime.fromtimestamp(int(m["epoch"]), tz=UTC)
            e.time_raw = m["epoch"]
        return (e,)
