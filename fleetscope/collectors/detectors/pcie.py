"""PCIe Advanced Error Reporting (AER) from the kernel log (drivers/pci/pcie/aer.c messages).

Uncorrected errors (fatal or not) on a GPU, or on the port above one that the NVIDIA driver cannot
recover (``nvidia ...: AER: can't recover (no error_detected callback)``), take the GPU off the bus:
a hardware or PCIe-link fault. Corrected errors alone are context.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.evidence import Evidence, Finding


class PcieAerDetector(Detector):
    """Uncorrectable PCIe errors under GPUs."""

    name = "pcie"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        by_node: dict[str | None, list[Evidence]] = {}
        for e in evidence:
            if e.kind == "pcie_aer":
                by_node.setdefault(e.node, []).append(e)
        for node, evs in by_node.items():
            serious = [e for e in evs if e.severity in ("critical", "error")]
            if not serious:
                continue
            gpus = sorted({e.gpu_pci_bus_id for e in evs if e.gpu_pci_bus_id})
            ports = sorted({str(e.attrs["device"]) for e in serious if e.attrs.get("driver") == "pcieport"})
            bits = sorted({str(e.attrs["error_bit"]) for e in evs if e.attrs.get("error_bit")})
            fatal = any(e.severity == "critical" for e in serious)
            bus = gpus[0] if len(gpus) == 1 else None
            gpu_ev = next((e for e in evs if e.gpu_pci_bus_id == bus), None) if bus else None
            yield Finding(
                explains="cluster",
                kind="pcie_aer_uncorrected",
                layer="gpu_hardware",
                role="cause",
                severity="critical" if fatal else "error",
                weight=0.85 if fatal else 0.75,
                summary=f"PCIe {'fatal ' if fatal else ''}uncorrected errors"
                + (f" on root port {', '.join(ports)}" if ports else "")
                + (f" above {where(None, gpu_ev.gpu if gpu_ev else None, bus)}" if bus else "")
                + f" on {node}"
                + (f" ({', '.join(bits)})" if bits else "")
                + "; recovery failed, so the GPU dropped off the bus: a hardware/PCIe-link fault",
                action=f"drain {node}; reseat the GPU and check its riser, slot and PCIe link "
                "(lspci -vvv link "
                "status); replace the part if the errors recur",
                node=node,
                gpu=gpu_ev.gpu if gpu_ev else None,
                gpu_pci_bus_id=bus,
                evidence=serious[:10],
            )
