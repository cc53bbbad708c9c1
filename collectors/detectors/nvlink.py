"""NVLink state from ``nvidia-smi nvlink -s`` (``nvmlDeviceGetNvLinkState`` per link).

A link reported ``<inactive>`` while the GPU's other links run is a link fault; NVML refusing to report
because every link is inactive cuts the GPU off the NVLink/NVSwitch fabric.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from collectors.detectors.base import Detector, where
from collectors.evidence import Evidence, Finding

_ACTION = (
    "drain {node}; run the NVLink diagnostics (dcgmi diag -r 3, nvidia-smi nvlink -e) and have the GPU "
    "baseboard, NVSwitch tray or cabling inspected"
)


class NvlinkDetector(Detector):
    """Inactive NVLinks per GPU."""

    name = "nvlink"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        links: dict[tuple[Any, ...], list[Evidence]] = {}
        for e in evidence:
            if e.kind == "nvlink_state":
                links.setdefault((e.node, e.gpu), []).append(e)
            elif e.kind == "nvlink_all_inactive":
                yield Finding(
                    kind="nvlink_all_inactive",
                    layer="nvlink",
                    role="cause",
                    severity="error",
                    weight=0.8 if e.gpu is not None else 0.7,
                    summary=f"Every NVLink of {where(e.node, e.gpu, e.gpu_pci_bus_id)} is inactive "
                    "(NVML cannot read NVLink state): cut off from the NVLink fabric",
                    action=_ACTION.format(node=e.node),
                    node=e.node,
                    gpu=e.gpu,
                    gpu_pci_bus_id=e.gpu_pci_bus_id,
                    evidence=[e],
                )
        for (node, gpu), evs in links.items():
            down = [e for e in evs if not e.attrs.get("up")]
            if not down:
                continue
            up = len(evs) - len(down)
            names = ", ".join(str(e.attrs["link"]) for e in down)
            yield Finding(
                kind="nvlink_inactive",
                layer="nvlink",
                role="cause",
                severity="error",
                weight=0.8,
                summary=f"{len(down)} of the {len(evs)} NVLinks of "
                f"{where(node, gpu, down[0].gpu_pci_bus_id)} are "
                f"inactive (links {names}) while {up} run: peer traffic of that GPU is degraded",
                action=_ACTION.format(node=node),
                node=node,
                gpu=gpu,
                gpu_pci_bus_id=down[0].gpu_pci_bus_id,
                evidence=down,
            )
