"""The GPU recovery action the driver asks for: anything but None is an incident on that GPU.

Read from ``nvidia-smi -q``'s "GPU Recovery Action" and ``--query-gpu=gpu_recovery_action`` (``smi_field``
evidence), from DCGM's field 1523 as dcgm-exporter names it (``metric`` evidence
``DCGM_FI_DEV_GPU_RECOVERY_ACTION``), and from DCGM's health watch, whose Driver system reports it as
"... Recovery action: 1 (GPU_RESET)." (``dcgm_health`` evidence; the gpu_health detector leaves these
to this one). Meaning, action, layer and weight per value are the reviewed
entries of ``gpu_recovery_action.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from fleetscope.collectors import knowledge
from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.evidence import DRIVER_NUMBERING, Evidence, Finding, Scope

#: dcgm-exporter's name for DCGM field 1523.
DCGM_RECOVERY_ACTION = "DCGM_FI_DEV_GPU_RECOVERY_ACTION"
#: DCGM's health-watch message for a recovery action (dcgm_errors.h DCGM_FR_GPU_RECOVERY_*_MSG: "GPU 2
#: requires a reset to recover from a fault. Recovery action: 1 (GPU_RESET).").
RECOVERY_MESSAGE = re.compile(r"Recovery action: (?P<code>\d+) \((?P<name>[A-Z0-9_]+)\)")
_SMI_PATHS = ("gpu recovery action", "gpu_recovery_action")
_SCOPES: dict[str, Scope] = {"gpu": "gpu", "node": "node", "cluster": "cluster"}


def _entry(value: Any) -> tuple[int, dict[str, Any]] | None:
    """The catalogue entry for a value as nvidia-smi prints it or DCGM exports it, or ``None``."""
    actions: dict[int, dict[str, Any]] = knowledge.load("gpu_recovery_action.yaml").get("actions", {})
    if isinstance(value, int | float) and not isinstance(value, bool):
        code = int(value)
        return (code, actions[code]) if code in actions else None
    text = str(value).strip().lower()
    return next(((c, e) for c, e in actions.items() if str(e.get("text", "")).lower() == text), None)


class GpuRecoveryActionDetector(Detector):
    """A GPU whose recovery action is anything but None."""

    name = "gpu_recovery_action"
    series = (DCGM_RECOVERY_ACTION,)

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        seen: set[tuple[Any, ...]] = set()
        for e in evidence:
            smi = e.kind == "smi_field" and str(e.attrs.get("path", "")).lower() in _SMI_PATHS
            dcgm = e.kind == "metric" and e.attrs.get("name") == DCGM_RECOVERY_ACTION
            said = (
                RECOVERY_MESSAGE.search(str(e.attrs.get("message", ""))) if e.kind == "dcgm_health" else None
            )
            if not (smi or dcgm or said):
                continue
            found = _entry(int(said["code"]) if said else e.attrs.get("value"))
            if found is None or found[0] == 0:
                continue
            code, entry = found
            key = (e.node, e.gpu_pci_bus_id or e.gpu, code)
            if key in seen:
                continue
            seen.add(key)
            place = where(e.node, e.gpu, e.gpu_pci_bus_id, bool(e.attrs.get(DRIVER_NUMBERING)))
            yield Finding(
                kind=f"gpu_recovery_action:{code}",
                layer=str(entry.get("layer", "gpu_hardware")),
                role="cause",
                severity="error",
                weight=float(entry.get("weight", 0.6)),
                summary=f"The driver asks for the recovery action '{entry.get('text')}' on {place}: "
                f"{entry.get('meaning', '')}",
                action=str(entry.get("action", "")),
                node=e.node,
                gpu=e.gpu,
                gpu_pci_bus_id=e.gpu_pci_bus_id,
                evidence=[e],
                explains=_SCOPES.get(str(entry.get("explains")), "gpu"),
            )
