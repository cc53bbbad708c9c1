"""Xid errors, read against NVIDIA's Xid catalogue (``collectors/knowledge/xid.yaml``).

Per GPU and Xid, one finding. The catalogue gives the layer, the origin (hardware, firmware, driver,
application, system, consequence), the severity and whether NVIDIA treats the Xid as a side effect of
another (Xid 45 channel teardown, Xid 154 recovery-action change). A fallen-off-the-bus message is Xid 79
in all but name, and so is NVML's ``NVML_ERROR_GPU_IS_LOST`` (fleetscope's ``fleetscope_gpu_lost`` gauge).
An Xid 45 that names its cause (``caused by previous Xid 145``) also yields a finding for that cause,
since the kernel log may have rotated the original line away.

The exporter's counters are the same facts as the kernel-log lines they count
(``fleetscope_gpu_xid_errors_total{gpu,xid}``, ``fleetscope_gpu_fallen_off_bus_total{gpu}``), so they
join the same per-GPU groups and go through the same catalogue entry: a counter only adds its count and
its source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from fleetscope.collectors import knowledge
from fleetscope.collectors.detectors.base import Detector, occurrences, where
from fleetscope.collectors.evidence import DRIVER_NUMBERING, Evidence, Finding
from fleetscope.collectors.knowledge import scoring
from fleetscope.exporters.gpu import LOST
from fleetscope.exporters.xid import FALLEN_OFF_BUS, XID_ERRORS

#: Prior strength as a root cause by catalogue origin, then scaled by severity (``scoring.yaml``, ``xid``).
_ORIGINS = ("hardware", "firmware", "driver", "application", "system")
_SEVERITIES = ("critical", "error", "warning", "info")
_UNKNOWN_XID: dict[str, Any] = {
    "name": "Xid not in the catalogue",
    "layer": "gpu_hardware",
    "origin": "driver",
    "severity": "error",
    "consequence_of_other": False,
    "action": "collect nvidia-bug-report.sh output and look the Xid up in NVIDIA's current catalogue",
}


def xid_finding(number: int, evidence: list[Evidence], inferred: bool = False) -> Finding:
    """Build the finding for one Xid on one GPU from its catalogue entry.

    Args:
        number: The Xid.
        evidence: Its evidence lines, first first (all on the same GPU).
        inferred: ``True`` when only a later Xid 45 names this Xid as its cause.

    Returns:
        A cause, or a symptom for Xids the catalogue marks as consequences of another.
    """
    entry = knowledge.xid(number) or _UNKNOWN_XID
    first = evidence[0]
    origin = entry.get("origin", "driver")
    consequence = bool(entry.get("consequence_of_other")) or origin == "consequence"
    layer = entry.get("layer", "gpu_hardware")
    severity = entry.get("severity", "error")
    weight = scoring(f"xid.origin_{origin if origin in _ORIGINS else 'other'}") * scoring(
        f"xid.severity_{severity if severity in _SEVERITIES else 'other'}"
    )
    if inferred:
        weight *= scoring("xid.inferred_factor")
    count = _count(evidence)
    place = where(first.node, first.gpu, first.gpu_pci_bus_id, bool(first.attrs.get(DRIVER_NUMBERING)))
    times = f" ({count} times)" if count > 1 else ""
    how = ", inferred from Xid 45 lines naming it as the cause" if inferred else ""
    summary = f"Xid {number} ({entry.get('name', '')}) on {place}{times}{how}"
    if consequence:
        summary += "; NVIDIA lists it as a consequence of another fault"
    return Finding(
        kind=f"xid:{number}",
        layer=layer,
        role="symptom" if consequence else "cause",
        severity=severity,
        weight=scoring("xid.consequence_weight") if consequence else weight,
        summary=summary,
        action=entry.get("action", ""),
        node=first.node,
        gpu=first.gpu,
        gpu_pci_bus_id=first.gpu_pci_bus_id,
        evidence=evidence,
        origin=origin,
        explains="cluster",
        count=count,
    )


def _count(evidence: list[Evidence]) -> int:
    """Occurrences behind one Xid's evidence: lines, or the exporter's counter where it counted more.

    The exporter counts the same kernel-log lines a bundle may also hold, so the two are not added.
    """
    counters = [e for e in evidence if e.kind == "metric" and e.attrs.get("name") in _COUNTERS]
    lines = occurrences(e for e in evidence if e.kind != "metric")
    counted = sum(int(float(e.attrs.get("value", 0))) for e in counters)
    return max(lines, counted, 1)


#: The exporter's counters of kernel-log Xid and fallen-off-the-bus messages.
_COUNTERS = (XID_ERRORS.name, FALLEN_OFF_BUS.name)


def _metric_xid(e: Evidence) -> int | None:
    """The Xid a metric sample reports, or ``None``."""
    name, value = e.attrs.get("name"), e.attrs.get("value")
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    if name == "DCGM_FI_DEV_XID_ERRORS":
        # dcgm-exporter's gauge holds the number of the last Xid seen.
        return int(value)
    if name == XID_ERRORS.name:
        xid = str(e.attrs.get("labels", {}).get("xid", ""))
        return int(xid) if xid.isdigit() else None
    if name in (FALLEN_OFF_BUS.name, LOST.name):
        return 79
    return None


def _rm_init_failed(e: Evidence) -> Finding:
    """The driver could not initialise a GPU: the GPU (or its firmware) did not come up."""
    detail = str(e.attrs.get("detail", "")).strip(" :!")
    return Finding(
        kind="rm_init_failed",
        layer="gpu_hardware",
        role="cause",
        severity="error",
        weight=scoring("rm_init.weight"),
        summary=f"The NVIDIA driver could not initialise {where(e.node, e.gpu, e.gpu_pci_bus_id)} "
        f"(RmInitAdapter failed{': ' + detail[:120] if detail else ''})",
        action="check nvidia-smi on that node; reset the GPU or reboot, and replace it if it still does not "
        "initialise (collect nvidia-bug-report.sh output)",
        node=e.node,
        gpu=e.gpu,
        gpu_pci_bus_id=e.gpu_pci_bus_id,
        evidence=[e],
        explains="node",
    )


class XidDetector(Detector):
    """Xid lines, fallen-off-the-bus messages, DCGM's last-Xid gauge and fleetscope's Xid counters."""

    name = "xid"
    series = ("DCGM_FI_DEV_XID_ERRORS", *_COUNTERS, LOST.name)
    above_zero = series  # no Xid, no count, GPU not lost

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        groups: dict[tuple[Any, ...], list[Evidence]] = {}
        inferred: dict[tuple[Any, ...], list[Evidence]] = {}
        for e in evidence:
            number: int | None = None
            if e.kind == "xid":
                number = int(e.attrs["xid"])
                cause = e.attrs.get("caused_by_xid")
                if cause is not None:
                    inferred.setdefault((e.node, e.gpu_pci_bus_id, e.gpu, int(cause)), []).append(e)
            elif e.kind == "gpu_fallen_off_bus":
                number = 79
            elif e.kind == "metric":
                number = _metric_xid(e)
            elif e.kind == "rm_init_failed":
                yield _rm_init_failed(e)
            if number is not None:
                groups.setdefault((e.node, e.gpu_pci_bus_id, e.gpu, number), []).append(e)
        for (_, _, _, number), evs in groups.items():
            yield xid_finding(number, evs)
        for key, evs in inferred.items():
            if key not in groups:
                yield xid_finding(key[3], evs, inferred=True)
