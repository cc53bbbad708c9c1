"""Known message shapes from ``collectors/knowledge/signatures.yaml`` (OOM, SIGBUS, storage, driver ...).

The parser only recognises the shape and records which signature matched and its named groups; the
``log_signatures`` detector gives it meaning (layer, role, weight) from the same reviewed entry.
"""

from __future__ import annotations

from collections.abc import Iterable

from collectors import knowledge
from collectors.evidence import Evidence, canonical_bus_id
from collectors.parsers.base import Line, LineParser


class SignatureParser(LineParser):
    """Lines matching any reviewed log signature."""

    name = "signatures"
    keywords = tuple(sorted({k for s in knowledge.signatures() for k in s.keywords}))

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        out = []
        for sig in knowledge.signatures():
            if not any(k in body for k in sig.keywords):
                continue
            m = sig.regex.search(body)
            if m is None:
                continue
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            gpu = groups.get("gpu")
            bus = groups.get("bus")
            out.append(
                self.ctx.evidence(
                    line, "signature", severity=sig.severity, layer=sig.layer,
                    gpu=int(gpu) if gpu and gpu.isdigit() else None,
                    gpu_pci_bus_id=canonical_bus_id(bus) if bus else None,
                    attrs={"signature": sig.id, "groups": groups},
                )
            )
        return out
