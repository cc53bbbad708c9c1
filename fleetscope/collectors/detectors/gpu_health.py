"""GPU health as NVML and DCGM report it: clock-event reasons, ECC, row remapping, DCGM health watches.

Sources: ``nvidia-smi -q`` fields (``nvmlDeviceGetCurrentClocksEventReasons``,
``nvmlDeviceGetMemoryErrorCounter``, ``nvmlDeviceGetRemappedRows``, ``nvmlDeviceGetRetiredPages``),
dcgm-exporter gauges (``DCGM_FI_DEV_ECC_DBE_*``, ``DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS``,
``DCGM_FI_DEV_ROW_REMAP_FAILURE``, ``DCGM_FI_DEV_ROW_REMAP_PENDING``, ``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``),
fleetscope's exporter series for the same NVML calls
(``fleetscope_gpu_ecc_volatile_uncorrected_errors_total``, ``fleetscope_gpu_remapped_rows_*``,
``fleetscope_gpu_clock_event_reason_active{reason}``,
``fleetscope_gpu_up``), nv-hostengine health incidents and ``dcgmi health -c`` results (``dcgmi diag``
results are the dcgmi_diag detector's).
Each fact is one row of :data:`MEMORY_SERIES` or :data:`FAULT_CLOCK_REASONS`, whichever source states it.
``SW Power Cap`` and ``Idle`` are normal clock reasons and are not faults; a GPU at or above its
slowdown temperature (``nvmlDeviceGetTemperatureThreshold``) is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.detectors.recovery_action import RECOVERY_MESSAGE
from fleetscope.collectors.evidence import DRIVER_NUMBERING, Evidence, Finding
from fleetscope.collectors.knowledge import scoring, scoring_text
from fleetscope.exporters.gpu import LOST, UP


@dataclass(frozen=True, slots=True)
class ClockReason:
    """A clock-event reason that means a thermal or power fault.

    Attributes:
        bit: Its ``nvmlClocksEventReason*`` bit (nvml.h), as in DCGM's ``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``.
        label: fleetscope's ``reason`` label value.
        smi: ``nvidia-smi -q``'s wording under "Clocks Event Reasons".
    """

    bit: int
    label: str
    smi: str


#: Clock-event reasons that mean a thermal or power fault (nvml.h nvmlClocksEventReason* HW/SW slowdowns);
#: the other reasons (idle, application clocks, SW power cap, sync boost, display) are normal operation.
FAULT_CLOCK_REASONS: tuple[ClockReason, ...] = (
    ClockReason(0x08, "hw_slowdown", "HW Slowdown"),
    ClockReason(0x20, "sw_thermal_slowdown", "SW Thermal Slowdown"),
    ClockReason(0x40, "hw_thermal_slowdown", "HW Thermal Slowdown"),
    ClockReason(0x80, "hw_power_brake_slowdown", "HW Power Brake Slowdown"),
)
_THERMAL_REASONS = tuple(r.smi for r in FAULT_CLOCK_REASONS)
#: DCGM's bitmask of current clock-event reasons (old and new field names).
_DCGM_CLOCK_REASONS = ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS")
_FLEETSCOPE_CLOCK_REASON = "fleetscope_gpu_clock_event_reason_active"
#: Memory-health series (name prefix, what a non-zero value means, its weight's entry in scoring.yaml's
#: ``gpu_health`` section, its action's entry in ``gpu_health_actions``).
#: DCGM fields and fleetscope counters read the same NVML calls (nvmlDeviceGetTotalEccErrors,
#: nvmlDeviceGetRemappedRows); only volatile ECC counts: aggregate ones hold the GPU's whole life.
MEMORY_SERIES: tuple[tuple[str, str, str, str], ...] = (
    (
        "DCGM_FI_DEV_ECC_DBE_VOL",
        "{value:.0f} volatile double-bit (uncorrectable) ECC errors",
        "uncorrectable_ecc",
        "memory",
    ),
    (
        "fleetscope_gpu_ecc_volatile_uncorrected_errors_total",
        "{value:.0f} volatile uncorrectable ECC errors since the last driver load",
        "uncorrectable_ecc",
        "memory",
    ),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "row remapping failed: no spare rows left", "remap_failure", "memory"),
    (
        "fleetscope_gpu_remapped_rows_failure",
        "row remapping failed: no spare rows left",
        "remap_failure",
        "memory",
    ),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "{value:.0f} rows remapped after uncorrectable errors",
        "uncorrectable_remapped_rows",
        "memory",
    ),
    (
        "fleetscope_gpu_remapped_rows_uncorrectable_total",
        "{value:.0f} rows remapped after uncorrectable errors",
        "uncorrectable_remapped_rows",
        "memory",
    ),
    (
        "DCGM_FI_DEV_ROW_REMAP_PENDING",
        "a row remap is pending; it takes effect at the next GPU reset",
        "remap_pending",
        "remap_pending",
    ),
    (
        "fleetscope_gpu_remapped_rows_pending",
        "a row remap is pending; it takes effect at the next GPU reset",
        "remap_pending",
        "remap_pending",
    ),
)
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


def _place(e: Evidence) -> str:
    """Where a GPU fact is, saying so when the report piece lost the line that named the GPU."""
    if e.gpu is None and e.gpu_pci_bus_id is None:
        node = e.node or "an unknown node"
        return f"a GPU of {node} (nvidia-smi's GPU header line is missing, so which one is unknown)"
    return where(e.node, e.gpu, e.gpu_pci_bus_id, bool(e.attrs.get(DRIVER_NUMBERING)))


def _number(value: Any) -> float:
    try:
        return float(str(value).split()[0])
    except (ValueError, IndexError):
        return 0.0


class GpuHealthDetector(Detector):
    """Thermal slowdowns, uncorrectable ECC and remapping state, DCGM health incidents."""

    name = "gpu_health"
    series = (
        UP.name,
        LOST.name,
        _FLEETSCOPE_CLOCK_REASON,
        *_DCGM_CLOCK_REASONS,
        *(r[0] for r in MEMORY_SERIES),
    )
    above_zero = series[1:]  # all but fleetscope_gpu_up, whose 0 is the fault

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        remap: dict[tuple[Any, ...], dict[str, Evidence]] = {}
        temps: dict[tuple[Any, ...], dict[str, Evidence]] = {}
        unanswered: list[Evidence] = []
        lost: set[tuple[Any, ...]] = set()
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
                        e,
                        f"{value} uncorrectable ECC errors since the last driver load ({path})",
                        "uncorrectable_ecc",
                    )
                elif low.startswith("temperature") and key in ("GPU Current Temp", "GPU Slowdown Temp"):
                    temps.setdefault((e.node, e.gpu_pci_bus_id, e.gpu), {})[key] = e
                elif low.startswith("remapped rows"):
                    remap.setdefault((e.node, e.gpu_pci_bus_id, e.gpu), {})[key] = e
                elif low.startswith("retired pages") and "pending" in key.lower() and value == "Yes":
                    yield self._memory(
                        e,
                        "a retired page is pending (takes effect at the next reset)",
                        "retired_page_pending",
                    )
            elif e.kind == "metric":
                name, value = e.attrs["name"], e.attrs["value"]
                if name == UP.name and value == 0:
                    unanswered.append(e)
                elif name == LOST.name and value == 1:
                    lost.add((e.node, e.gpu_pci_bus_id, e.gpu))
                if not isinstance(value, int | float) or not value > 0:
                    continue
                memory = _memory_row(name)
                if memory is not None:
                    yield self._memory(e, memory[1].format(value=value), memory[2], action=memory[3])
                elif name == _FLEETSCOPE_CLOCK_REASON:
                    label = str(e.attrs.get("labels", {}).get("reason", ""))
                    reason = next((r for r in FAULT_CLOCK_REASONS if r.label == label), None)
                    if reason is not None:
                        yield self._thermal(e, f"the clock-event reason '{reason.smi}' is active")
                elif name in _DCGM_CLOCK_REASONS:
                    active = [r.smi for r in FAULT_CLOCK_REASONS if int(value) & r.bit]
                    if active:
                        yield self._thermal(e, f"the clock-event reasons {active} are active")
            elif e.kind == "dcgm_health" and not RECOVERY_MESSAGE.search(str(e.attrs.get("message", ""))):
                system = str(e.attrs.get("system", "")).strip().lower()
                layer = _DCGM_SYSTEM_LAYER.get(system, "gpu_hardware")
                yield Finding(
                    explains="cluster",
                    kind=f"dcgm_health:{system}",
                    layer=layer,
                    role="cause",
                    severity=e.severity,
                    weight=scoring(
                        "gpu_health.dcgm_health_error"
                        if e.severity == "error"
                        else "gpu_health.dcgm_health_warning"
                    ),
                    summary=f"DCGM's health watch raised a {e.attrs['level']} for {system} on "
                    f"{where(e.node, e.gpu, e.gpu_pci_bus_id)}: {e.attrs['message'][:200]}",
                    action=scoring_text(
                        "gpu_health_actions.dcgm_thermal"
                        if layer == "thermal_power"
                        else "gpu_health_actions.dcgm_other"
                    ),
                    node=e.node,
                    gpu=e.gpu,
                    gpu_pci_bus_id=e.gpu_pci_bus_id,
                    evidence=[e],
                )
        for e in unanswered:
            # A lost GPU is Xid 79 in all but name (the Xid detector's); one that is not lost but whose
            # NVML calls hang or fail is a GPU or driver in trouble, with nothing yet to say which.
            if (e.node, e.gpu_pci_bus_id, e.gpu) not in lost:
                yield Finding(
                    explains="cluster",
                    kind="nvml_unresponsive",
                    layer="gpu_hardware",
                    role="cause",
                    severity="error",
                    weight=scoring("gpu_health.nvml_unresponsive"),
                    summary=f"NVML did not answer for {where(e.node, e.gpu, e.gpu_pci_bus_id)} "
                    "(fleetscope_gpu_up 0): its driver calls hang or fail",
                    action=scoring_text("gpu_health_actions.nvml_unresponsive"),
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
                yield self._memory(failure, "row remapping failed: no spare rows left", "remap_failure")
            elif pending is not None and pending.attrs["value"] == "Yes":
                counts = ", ".join(f"{k}: {v.attrs['value']}" for k, v in fields.items() if "Error" in k)
                yield self._memory(
                    pending,
                    f"a row remap is pending ({counts}); it takes effect at the next GPU reset",
                    "remap_pending",
                    action="remap_pending",
                )

    @staticmethod
    def _thermal(e: Evidence, what: str) -> Finding:
        return Finding(
            explains="cluster",
            kind="thermal_slowdown",
            layer="thermal_power",
            role="cause",
            severity="warning",
            weight=scoring("gpu_health.thermal_slowdown"),
            summary=f"{_place(e)[:1].upper()}{_place(e)[1:]} is slowed down for heat or power: {what}",
            action=scoring_text("gpu_health_actions.thermal"),
            node=e.node,
            gpu=e.gpu,
            gpu_pci_bus_id=e.gpu_pci_bus_id,
            evidence=[e],
        )

    @staticmethod
    def _memory(e: Evidence, what: str, weight: str, action: str = "memory") -> Finding:
        """A GPU-memory cause; ``weight`` and ``action`` name entries of scoring.yaml's ``gpu_health`` and
        ``gpu_health_actions`` sections."""
        return Finding(
            explains="cluster",
            kind="gpu_memory_errors",
            layer="gpu_memory",
            role="cause",
            severity="error",
            weight=scoring(f"gpu_health.{weight}"),
            summary=f"GPU memory of {_place(e)}: {what}",
            action=scoring_text(f"gpu_health_actions.{action}"),
            node=e.node,
            gpu=e.gpu,
            gpu_pci_bus_id=e.gpu_pci_bus_id,
            evidence=[e],
        )


@lru_cache(maxsize=4096)
def _memory_row(name: str) -> tuple[str, str, str, str] | None:
    """The row of :data:`MEMORY_SERIES` a series of this name is read by, or None (names are few)."""
    return next((row for row in MEMORY_SERIES if name.startswith(row[0])), None)
