"""Known message shapes: ``signatures.yaml`` (OOM, SIGBUS, storage, driver ...) and CUDA error reports.

CUDA errors are named from ``cuda_errors.yaml`` on lines that report a CUDA error (see
:data:`fleetscope.collectors.knowledge.CUDA_ERROR_KEYWORDS`) and that no signature already explained.

The parser only recognises the shape and records which signature matched and its named groups; the
``log_signatures`` detector gives it meaning (layer, role, weight) from the same reviewed entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetscope.collectors import knowledge
from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import Line, LineParser
from fleetscope.formats import canonical_bus_id

_GPU = re.compile(r"\bGPU (\d+)\b")
#: A CUDA error number as reports print it: ``Error 802:``, ``error (35)``, ``error=35``, ``code=802(``.
_CODE = re.compile(r"\b(?:[Ee]rror ?[=(]? ?|code=)(?P<code>\d{1,4})\b\)? ?[:(]")


class SignatureParser(LineParser):
    """Lines matching any reviewed log signature."""

    name = "signatures"
    keywords = tuple(
        sorted({k for s in knowledge.signatures() for k in s.keywords} | set(knowledge.CUDA_ERROR_KEYWORDS))
    )

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        out = []
        for sig in knowledge.signatures():
            if not any(k in body for k in sig.keywords):
                continue
            m = sig.regex.search(body)
            if m is None or (sig.unless is not None and sig.unless.search(body)):
                continue
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            gpu = groups.get("gpu")
            bus = groups.get("bus")
            host = groups.get("host") or groups.get("node_name")
            out.append(
                self.ctx.evidence(
                    line,
                    "signature",
                    # A cluster-wide log (a scheduler's) names the node in the message itself.
                    node=self.ctx.node or host or line.pre.host,
                    severity=sig.severity,
                    layer=sig.layer,
                    gpu=int(gpu) if gpu and gpu.isdigit() else None,
                    gpu_pci_bus_id=canonical_bus_id(bus) if bus else None,
                    attrs={"signature": sig.id, "groups": groups},
                )
            )
        if not out and any(k in body for k in knowledge.CUDA_ERROR_KEYWORDS):
            out.extend(self._cuda(line, body))
        return out

    def _cuda(self, line: Line, body: str) -> Iterable[Evidence]:
        """A CUDA error report, named by the first catalogue entry whose name, message or number it holds."""
        code = _CODE.search(body)
        number = int(code["code"]) if code else None
        for entry in knowledge.cuda_errors():
            names = [entry.get("name"), entry.get("driver_name")]
            if (
                any(n and n in body for n in names)
                or any(m in body for m in entry.get("messages", []))
                or (number is not None and entry.get("code") == number)
            ):
                gpu = _GPU.search(body)
                yield self.ctx.evidence(
                    line,
                    "cuda_error",
                    severity="error",
                    layer=entry.get("layer"),
                    gpu=int(gpu.group(1)) if gpu else None,
                    attrs={"name": entry["name"]},
                )
                return
