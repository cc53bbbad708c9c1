"""NVLink state and error counters from ``nvidia-smi nvlink -s`` / ``-e``.

Sources: ``nvmlDeviceGetNvLinkState`` per link (``-s``) and ``nvmlDeviceGetNvLinkErrorCounter`` (``-e``:
replay, recovery and CRC counters per link). A link reported ``<inactive>`` while the GPU's other links
run is a link fault; NVML refusing to report because every link is inactive cuts the GPU off the
NVLink/NVSwitch fabric. A link whose error counters stand far above every other link of the bundle
(``nvlink.errors_min`` and ``nvlink.errors_ratio`` of ``knowledge/scoring.yaml`` times the median link)
is a bad lane or connector; a few errors spread over many links are noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring

_ACTION = (
    "drain {node}; run the NVLink diagnostics (dcgmi diag -r 3, nvidia-smi nvlink -e) and have the GPU "
    "baseboard, NVSwitch tray or cabling inspected"
)


class NvlinkDetector(Detector):
    """Inactive NVLinks per GPU."""

    name = "nvlink"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        links: dict[tuple[Any, ...], list[Evidence]] = {}
        counters: dict[tuple[Any, ...], list[Evidence]] = {}
        for e in evidence:
            if e.kind == "nvlink_error_counter":
                counters.setdefault((e.node, e.gpu, e.attrs["link"]), []).append(e)
            elif e.kind == "nvlink_state":
                links.setdefault((e.node, e.gpu), []).append(e)
            elif e.kind == "nvlink_all_inactive":
                yield Finding(
                    explains="cluster",
                    kind="nvlink_all_inactive",
                    layer="nvlink",
                    role="cause",
                    severity="error",
                    weight=scoring(
                        "nvlink.all_inactive_weight"
                        if e.gpu is not None
                        else "nvlink.all_inactive_unplaced_weight"
                    ),
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
                explains="cluster",
                kind="nvlink_inactive",
                layer="nvlink",
                role="cause",
                severity="error",
                weight=scoring("nvlink.links_down_weight"),
                summary=f"{len(down)} of the {len(evs)} NVLinks of "
                f"{where(node, gpu, down[0].gpu_pci_bus_id)} are "
                f"inactive (links {names}) while {up} run: peer traffic of that GPU is degraded",
                action=_ACTION.format(node=node),
                node=node,
                gpu=gpu,
                gpu_pci_bus_id=down[0].gpu_pci_bus_id,
                evidence=down,
            )
        yield from _error_outliers(counters)


def _error_outliers(counters: dict[tuple[Any, ...], list[Evidence]]) -> Iterable[Finding]:
    """Links whose error counters stand far above the bundle's median link."""
    totals = {key: sum(int(e.attrs["value"]) for e in evs) for key, evs in counters.items()}
    if not totals:
        return
    median = statistics.median(totals.values())
    for (node, gpu, link), total in totals.items():
        if total < scoring("nvlink.errors_min") or total < scoring("nvlink.errors_ratio") * max(median, 1.0):
            continue
        evs = [e for e in counters[(node, gpu, link)] if int(e.attrs["value"])]
        counts = ", ".join(f"{e.attrs['counter']} {e.attrs['value']}" for e in evs)
        yield Finding(
            explains="cluster",
            kind="nvlink_error_counters",
            layer="nvlink",
            role="cause",
            severity="error",
            weight=scoring("nvlink.errors_weight"),
            summary=f"NVLink {link} of {where(node, gpu, evs[0].gpu_pci_bus_id)} counts {counts} while "
            f"the median link of the bundle counts {median:g}: that link is faulty",
            action=_ACTION.format(node=node),
            node=node,
            gpu=gpu,
            gpu_pci_bus_id=evs[0].gpu_pci_bus_id,
            evidence=evs,
            count=total,
        )
