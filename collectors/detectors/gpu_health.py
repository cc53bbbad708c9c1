"""GPU health as NVML and DCGM report it: clock-event reasons, ECC, row remapping, DCGM health watches.

Sources: ``nvidia-smi -q`` fields (``nvmlDeviceGetCurrentClocksEventReasons``,
``nvmlDeviceGetMemoryErrorCounter``, ``nvmlDeviceGetRemappedRows``, ``nvmlDeviceGetRetiredPages``),
dcgm-exporter gauges (``DCGM_FI_DEV_ECC_DBE_*``, ``DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS``,
``DCGM_FI_DEV_ROW_REMAP_FAILURE``, ``DCGM_FI_DEV_THERMAL_VIOLATION``) and nv-hostengine health incidents.
``SW Power Cap`` and ``Idle`` are normal clock reasons and are not faults; a GPU at or above its
slowdown temperature (``nvmlDeviceGetTemperatureThreshold``) is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from collectors.detectors.base import Detector, where
from collectors.evidence import Evidence, Finding

#: Clock-event reasons that mean a thermal or power fault (nvmlClocksEventReason* HW/SW slowdowns).
_THERMAL_REASONS = ("HW Slowdown", "HW Thermal Slowdown", "HW Power Brake Slowdown", "SW Thermal Slowdown")
_DCGM_SYSTEM_LAYER = {
    "thermal": "thermal_power",
    "power": "thermal_power",
    "memory": "gpu_memory",
    "nvlink": "nvlink",
    "pcie": "gpu_hardware",
    "inforom": "gpu_hardware",
    "driver": "host_software",
    "sm": "gpu_hardware",
    "nvswitch": "nvlink",
    "mcu": "gpu_hardware",
}


def _number(value: Any) -> float:
    try:
        return float(str(value).split()[0])
    except (ValueError, IndexError):
        return 0.0


class GpuHealthDetector(Detector):
    """Thermal slowdowns, uncorrectable ECC and remapping state, DCGM health incidents."""

    name = "gpu_health"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        remap: dict[tuple[Any, ...], dict[str, Evidence]] = {}
        temps: dict[tuple[Any, ...], dict[str, Evidence]] = {}
        for e in evidence:
            if e.kind == "smi_field":
                path, value = e.attrs["path"], e.attrs["value"]
                key = path.split(" / ")[-1]
                low = path.lower()
                if (
                    low.startswith(("clocks throttle reasons", "clocks event reasons"))
                    and key in _THERMAL_REASONS
                    and value == "Active"
                ):
                    yield self._thermal(e, f"the clock-event reason '{key}' is active")
                elif (
                    low.startswith("ecc errors")
                    and "uncorrectable" in key.lower()
                    and "volatile" in low
                    and _number(value) > 0
                ):
                    yield self._memory(
                        e, f"{value} uncorrectable ECC errors since the last driver load ({path})", 0.85
                    )
                elif low.startswith("temperature") and key in ("GPU Current Temp", "GPU Slowdown Temp"):
                    temps.setdefault((e.node, e.gpu_pci_bus_id, e.gpu), {})[key] = e
                elif low.startswith("remapped rows"):
                    remap.setdefault((e.node, e.gpu_pci_bus_id, e.gpu), {})[key] = e
                elif low.startswith("retired pages") and "pending" in key.lower() and value == "Yes":
                    yield self._memory(e, "a retired page is pending (takes effect at the next reset)", 0.6)
            elif e.kind == "metric":
                name, value = e.attrs["name"], e.attrs["value"]
                if name.startswith("DCGM_FI_DEV_ECC_DBE_VOL") and value > 0:
                    yield self._memory(e, f"{value:.0f} volatile double-bit (uncorrectable) ECC errors", 0.85)
                elif name == "DCGM_FI_DEV_ROW_REMAP_FAILURE" and value > 0:
                    yield self._memory(e, "row remapping failed: no spare rows left", 0.9)
                elif name == "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS" and value > 0:
                    yield self._memory(e, f"{value:.0f} rows remapped after uncorrectable errors", 0.75)
            elif e.kind == "dcgm_health":
                system = str(e.attrs.get("system", "")).strip().lower()
                layer = _DCGM_SYSTEM_LAYER.get(system, "gpu_hardware")
                yield Finding(
                    kind=f"dcgm_health:{system}",
                    layer=layer,
                    role="cause",
                    severity=e.severity,
                    weight=0.75 if e.severity == "error" else 0.7,
                    summary=f"DCGM's health watch raised a {e.attrs['level']} for {system} on "
                    f"{where(e.node, e.gpu, e.gpu_pci_bus_id)}: {e.attrs['message'][:200]}",
                    action="check cooling (fans, airflow, thermal interface) of that GPU"
                    if layer == "thermal_power"
                    else "run dcgmi diag -r 3 on that GPU and follow its result",
                    node=e.node,
                    gpu=e.gpu,
                    gpu_pci_bus_id=e.gpu_pci_bus_id,
                    evidence=[e],
                )
        for pair in temps.values():
            current, slowdown = pair.get("GPU Current Temp"), pair.get("GPU Slowdown Temp")
            if (
                current
                and slowdown
                and 0 < _number(slowdown.attrs["value"]) <= _number(current.attrs["value"])
            ):
                yield self._thermal(
                    current,
                    f"it runs at {current.attrs['value']}, at or above its slowdown temperature "
                    f"({slowdown.attrs['value']})",
                )
        for fields in remap.values():
            pending = fields.get("Pending")
            failure = fields.get("Remapping Failure Occurred")
            if failure is not None and failure.attrs["value"] == "Yes":
                yield self._memory(failure, "row remapping failed: no spare rows left", 0.9)
            elif pending is not None and pending.attrs["value"] == "Yes":
                counts = ", ".join(f"{k}: {v.attrs['value']}" for k, v in fields.items() if "Error" in k)
                yield self._memory(
                    pending,
                    f"a row remap is pending ({counts}); it takes effect at the next GPU reset",
                    0.55,
                    action="reset the GPU (or reboot) at a convenient time so the "
                    "remap takes effect; watch its remap count",
                )

    @staticmethod
    def _thermal(e: Evidence, what: str) -> Finding:
        return Finding(
            kind="thermal_slowdown",
            layer="thermal_power",
            role="cause",
            severity="warning",
            weight=0.7,
            summary=f"{where(e.node, e.gpu, e.gpu_pci_bus_id)} is slowed down for heat or power: {what}",
            action="check that GPU's cooling (fans, airflow, heatsink contact) and power delivery",
            node=e.node,
            gpu=e.gpu,
            gpu_pci_bus_id=e.gpu_pci_bus_id,
            evidence=[e],
        )

    @staticmethod
    def _memory(e: Evidence, what: str, weight: float, action: str = "") -> Finding:
        return Finding(
            kind="gpu_memory_errors",
            layer="gpu_memory",
            role="cause",
            severity="error",
            weight=weight,
            summary=f"GPU memory of {where(e.node, e.gpu, e.gpu_pci_bus_id)}: {what}",
            action=action
            or "drain the node; reset the GPU and check row remapping; replace the GPU if errors recur",
            node=e.node,
            gpu=e.gpu,
            gpu_pci_bus_id=e.gpu_pci_bus_id,
            evidence=[e],
        )
