"""PCIe Advanced Error Reporting (AER) from the kernel log (drivers/pci/pcie/aer.c and err.c messages).

Per node, uncorrected errors (fatal or not) under a GPU are a hardware or PCIe-link fault, and what the
summary says follows the kernel's own lines after them: ``AER: device recovery successful`` (err.c
``pcie_do_recovery``) means the device works again, so a non-fatal error it recovered from is context for
the timeline, not an incident, unless an error from another source follows on the node; ``AER: device
recovery failed`` or ``can't recover (no error_detected callback)`` means it does not; with neither line
the summary says the kernel reported no outcome. A GPU fallen off the bus is only said where the kernel
says so (the Xid detector reads that line). Corrected errors alone are context.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.detectors.connections import suffered
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring

#: err.c's outcome lines, lower case.
_RECOVERED = "recovery successful"
_NOT_RECOVERED = ("recovery failed", "can't recover", "cannot recover")


class PcieAerDetector(Detector):
    """Uncorrectable PCIe errors under GPUs, and whether the kernel recovered the device."""

    name = "pcie"
    sees_all = True  # an error on the node after the recovery keeps the fault a cause

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        by_node: dict[str | None, list[Evidence]] = {}
        for e in evidence:
            if e.kind == "pcie_aer":
                by_node.setdefault(e.node, []).append(e)
        for node, evs in by_node.items():
            serious = [e for e in evs if e.severity in ("critical", "error")]
            if not serious:
                continue
            messages = [str(e.attrs.get("message", "")).lower() for e in evs]
            gpus = sorted({e.gpu_pci_bus_id for e in evs if e.gpu_pci_bus_id})
            ports = sorted({str(e.attrs["device"]) for e in serious if e.attrs.get("driver") == "pcieport"})
            bits = sorted({str(e.attrs["error_bit"]) for e in evs if e.attrs.get("error_bit")})
            fatal = any(e.severity == "critical" for e in serious)
            bus = gpus[0] if len(gpus) == 1 else None
            gpu_ev = next((e for e in evs if e.gpu_pci_bus_id == bus), None) if bus else None
            failed = [e for e, m in zip(evs, messages, strict=True) if any(w in m for w in _NOT_RECOVERED)]
            recovered = None if failed else _recovered(evs, serious)
            # An error from another source after the recovery keeps the AER error a cause.
            hurt = suffered(evidence, node, serious[0], recovered, "pcie_aer") if recovered else None
            healed = recovered is not None and hurt is None and not fatal
            if failed:
                outcome = "; the kernel reports that recovery failed: a hardware/PCIe-link fault"
            elif healed:
                outcome = "; the kernel reports the device recovered"
            elif recovered is not None and hurt is not None:
                outcome = (
                    f"; the kernel reports the device recovered, but {hurt.kind.replace('_', ' ')} followed "
                    "on the node: a hardware/PCIe-link fault"
                )
            elif recovered is not None:
                outcome = "; the kernel reports the device recovered, but the error was fatal"
            else:
                outcome = "; the kernel reports no recovery outcome: a hardware/PCIe-link fault"
            yield Finding(
                kind="pcie_aer_recovered" if healed else "pcie_aer_uncorrected",
                layer="gpu_hardware",
                role="context" if healed else "cause",
                severity="warning" if healed else ("critical" if fatal else "error"),
                weight=scoring(
                    "pcie.recovered_weight"
                    if healed
                    else ("pcie.fatal_weight" if fatal else "pcie.uncorrected_weight")
                ),
                summary=f"PCIe {'fatal' if fatal else 'non-fatal'} uncorrected errors"
                + (f" on root port {', '.join(ports)}" if ports else "")
                + (f" above {where(None, gpu_ev.gpu if gpu_ev else None, bus)}" if bus else "")
                + f" on {node}"
                + (f" ({', '.join(bits)})" if bits else "")
                + outcome,
                action="watch the GPU's AER and Xid lines; reseat the GPU and check its riser and slot if "
                "the errors recur"
                if healed
                else f"drain {node}; reseat the GPU and check its riser, slot and PCIe link (lspci -vvv link "
                "status); replace the part if the errors recur",
                node=node,
                gpu=gpu_ev.gpu if gpu_ev else None,
                gpu_pci_bus_id=bus,
                evidence=[*serious[:10], *(failed or ([recovered] if recovered else []))[:2]],
                explains="cluster",
            )


def _recovered(evs: list[Evidence], serious: list[Evidence]) -> Evidence | None:
    """The "recovery successful" line after the last uncorrected error, or ``None``."""
    last = max(serious, key=_position)
    return next(
        (
            e
            for e in evs
            if _RECOVERED in str(e.attrs.get("message", "")).lower() and _position(e) > _position(last)
        ),
        None,
    )


def _position(e: Evidence) -> tuple[str, int]:
    file, _, line = e.source.rpartition(":")
    return file, int(line) if line.isdigit() else 0
