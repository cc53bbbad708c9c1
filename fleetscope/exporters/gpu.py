"""GPU collector: per-GPU readings through NVML (``pynvml``, package nvidia-ml-py).

Every NVML call runs in a worker thread that belongs to one GPU, and a scrape waits for each GPU only
until a deadline: a GPU whose driver call hangs (a GPU falling off the bus can hang NVML for minutes)
is reported ``fleetscope_gpu_up 0`` and skipped, while the others are read as usual; it is read again
once its stuck call returns. A field the model lacks (``NVMLError_NotSupported``) leaves that one series
out for that GPU. ``NVMLError_GpuIsLost`` marks the GPU ``fleetscope_gpu_lost 1``. Without a driver or
library, ``collect()`` raises :class:`~fleetscope.exporters.scrape.SourceUnavailable` and retries ``nvmlInit``
on the next scrape, so a node whose driver is installed later needs no restart.

The NVML module is injected (``nvml=pynvml`` by default); tests pass a fake with the same functions and
the same ``pynvml.NVMLError_*`` classes.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pynvml
from prometheus_client.core import Metric

from fleetscope.exporters.metrics import MetricSpec, add
from fleetscope.exporters.pci import canonical_pci_bus_id
from fleetscope.exporters.registry import BuildContext, Setting, register
from fleetscope.exporters.scrape import SourceUnavailable, Worker

log = logging.getLogger(__name__)

NvmlReader = Callable[[Any, Any], Any]
"""``(nvml, handle) -> raw value``, or a ``{label value: raw value}`` mapping for a labelled metric."""


@dataclass(frozen=True)
class GpuMetric:
    """A reviewed GPU metric: its spec and the NVML read that feeds it.

    Attributes:
        spec: Name, type, help (naming the NVML function), source and scale to base units.
        read: The NVML read; may raise ``pynvml.NVMLError_*``. With ``keys``, ``read(nvml, handle, key)``
            reads the value of one label value.
        keys: For a metric NVML answers one label value at a time (violation policies, retirement
            causes): the label values. One NVML answers NOT_SUPPORTED for is not asked again, as a whole
            metric is not; the metric is unsupported when every one is.
    """

    spec: MetricSpec
    read: Callable[..., Any]
    keys: tuple[str, ...] = ()


# Bits of nvmlDeviceGetCurrentClocksEventReasons (nvml.h nvmlClocksEventReason*), by label value.
CLOCK_EVENT_REASONS = {
    "gpu_idle": "nvmlClocksEventReasonGpuIdle",
    "applications_clocks_setting": "nvmlClocksEventReasonApplicationsClocksSetting",
    "sw_power_cap": "nvmlClocksEventReasonSwPowerCap",
    "hw_slowdown": "nvmlClocksEventReasonHwSlowdown",
    "sync_boost": "nvmlClocksEventReasonSyncBoost",
    "sw_thermal_slowdown": "nvmlClocksEventReasonSwThermalSlowdown",
    "hw_thermal_slowdown": "nvmlClocksEventReasonHwThermalSlowdown",
    "hw_power_brake_slowdown": "nvmlClocksEventReasonHwPowerBrakeSlowdown",
    "display_clock_setting": "nvmlClocksEventReasonDisplayClockSetting",
}


def _field_layout() -> struct.Struct:
    """``nvmlFieldValue_t`` as ``(valueType, nvmlReturn, value bytes)``, from ctypes' own offsets."""
    fields = pynvml.c_nvmlFieldValue_t
    parts, at = [], 0
    for name, code in (("valueType", "I"), ("nvmlReturn", "I"), ("value", "8s")):
        member = getattr(fields, name)
        parts.append(f"{member.offset - at}x{code}" if member.offset > at else code)
        at = member.offset + member.size
    tail = ctypes.sizeof(fields) - at
    return struct.Struct("=" + "".join(parts) + (f"{tail}x" if tail else ""))


_FIELD_LAYOUT = _field_layout()
# nvmlFieldValue_t.valueType -> how its value union is read (nvml.h nvmlValueType_t; unsigned long is
# 64 bits on the Linux ABI NVML ships for).
_FIELD_VALUE = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: struct.Struct("=d"),
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: struct.Struct("=I4x"),
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: struct.Struct(
        f"={'Q' if ctypes.sizeof(ctypes.c_ulong) == 8 else 'I4x'}"
    ),
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: struct.Struct("=Q"),
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: struct.Struct("=q"),
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: struct.Struct("=i4x"),
}


def field_values(nvml: Any, handle: Any, requests: list[Any]) -> list[tuple[int, float]]:
    """One ``nvmlDeviceGetFieldValues`` call, decoded: ``(nvmlReturn, number)`` per request, in order.

    The returned ``nvmlFieldValue_t`` array is unpacked in one pass from its bytes (layout from ctypes),
    not member by member through pynvml's structure wrappers, which cost more than NVML's own call.

    Args:
        nvml: The NVML module.
        handle: The GPU's handle.
        requests: Field ids, or ``(field id, scope id)`` pairs (``scopeId`` = NVLink number, ...).

    Returns:
        Per request, NVML's return code for that field and its value (0.0 unless the code is
        ``NVML_SUCCESS``; ``NVML_ERROR_UNKNOWN`` for a value type it cannot hold).

    Raises:
        pynvml.NVMLError: The call's own error (GPU lost, timeout ...).
    """
    decoded, success = [], nvml.NVML_SUCCESS
    for value_type, code, raw in _FIELD_LAYOUT.iter_unpack(
        bytes(nvml.nvmlDeviceGetFieldValues(handle, requests))
    ):
        if code != success:
            decoded.append((code, 0.0))
        elif (layout := _FIELD_VALUE.get(value_type)) is None:
            decoded.append((nvml.NVML_ERROR_UNKNOWN, 0.0))
        else:
            decoded.append((code, float(layout.unpack(raw)[0])))
    return decoded


def _field_value(nvml: Any, handle: Any, field_id: int) -> float:
    """Read one NVML field (nvmlDeviceGetFieldValues); its per-field return code is raised as usual."""
    ((code, number),) = field_values(nvml, handle, [field_id])
    if code != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(code)
    return number


def _clock_event_reasons(nvml: Any, handle: Any) -> dict[str, float]:
    mask = nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
    return {reason: float(bool(mask & getattr(nvml, bit))) for reason, bit in CLOCK_EVENT_REASONS.items()}


def _ecc(error_type: str, counter_type: str) -> NvmlReader:
    def read(nvml: Any, handle: Any) -> int:
        return int(
            nvml.nvmlDeviceGetTotalEccErrors(handle, getattr(nvml, error_type), getattr(nvml, counter_type))
        )

    return read


def _spec(
    name: str, kind: str, help: str, source: str, scale: float = 1.0, extra: tuple[str, ...] = ()
) -> MetricSpec:
    return MetricSpec(name, kind, help, source, scale, ("gpu", *extra))  # type: ignore[arg-type]


_ECC_SPAN = {"volatile": "since the last driver load or GPU reset", "aggregate": "lifetime, in the infoROM"}


def _ecc_metric(counter: str, error: str) -> GpuMetric:
    return GpuMetric(
        _spec(
            f"fleetscope_gpu_ecc_{counter}_{error}_errors_total",
            "counter",
            f"{error.capitalize()} ECC errors, {counter} counter ({_ECC_SPAN[counter]}); "
            f"nvmlDeviceGetTotalEccErrors(NVML_MEMORY_ERROR_TYPE_{error.upper()}, "
            f"NVML_{counter.upper()}_ECC).",
            "nvmlDeviceGetTotalEccErrors",
        ),
        _ecc(f"NVML_MEMORY_ERROR_TYPE_{error.upper()}", f"NVML_{counter.upper()}_ECC"),
    )


def _remapped(position: int) -> NvmlReader:
    def read(nvml: Any, handle: Any) -> int:
        return int(nvml.nvmlDeviceGetRemappedRows(handle)[position])

    return read


METRICS: tuple[GpuMetric, ...] = (
    GpuMetric(
        _spec(
            "fleetscope_gpu_temperature_celsius",
            "gauge",
            "GPU die temperature; nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU).",
            "nvmlDeviceGetTemperature",
        ),
        lambda n, h: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_memory_temperature_celsius",
            "gauge",
            "HBM temperature; nvmlDeviceGetFieldValues(NVML_FI_DEV_MEMORY_TEMP).",
            "nvmlDeviceGetFieldValues:NVML_FI_DEV_MEMORY_TEMP",
        ),
        lambda n, h: _field_value(n, h, n.NVML_FI_DEV_MEMORY_TEMP),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_power_watts",
            "gauge",
            "Board power draw; nvmlDeviceGetPowerUsage (mW).",
            "nvmlDeviceGetPowerUsage",
            1e-3,
        ),
        lambda n, h: n.nvmlDeviceGetPowerUsage(h),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_energy_joules_total",
            "counter",
            "Energy used since the driver was loaded; nvmlDeviceGetTotalEnergyConsumption (mJ).",
            "nvmlDeviceGetTotalEnergyConsumption",
            1e-3,
        ),
        lambda n, h: n.nvmlDeviceGetTotalEnergyConsumption(h),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_utilization_ratio",
            "gauge",
            "Fraction of the last sample period a kernel ran; nvmlDeviceGetUtilizationRates().gpu (%).",
            "nvmlDeviceGetUtilizationRates.gpu",
            0.01,
        ),
        lambda n, h: n.nvmlDeviceGetUtilizationRates(h).gpu,
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_memory_utilization_ratio",
            "gauge",
            "Fraction of the last sample period device memory was read or written; "
            "nvmlDeviceGetUtilizationRates().memory (%).",
            "nvmlDeviceGetUtilizationRates.memory",
            0.01,
        ),
        lambda n, h: n.nvmlDeviceGetUtilizationRates(h).memory,
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_memory_used_bytes",
            "gauge",
            "Device memory allocated; nvmlDeviceGetMemoryInfo().used.",
            "nvmlDeviceGetMemoryInfo.used",
        ),
        lambda n, h: n.nvmlDeviceGetMemoryInfo(h).used,
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_memory_total_bytes",
            "gauge",
            "Device memory installed and visible to the driver; nvmlDeviceGetMemoryInfo().total.",
            "nvmlDeviceGetMemoryInfo.total",
        ),
        lambda n, h: n.nvmlDeviceGetMemoryInfo(h).total,
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_sm_clock_hertz",
            "gauge",
            "Current SM clock; nvmlDeviceGetClockInfo(NVML_CLOCK_SM) (MHz).",
            "nvmlDeviceGetClockInfo:NVML_CLOCK_SM",
            1e6,
        ),
        lambda n, h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_memory_clock_hertz",
            "gauge",
            "Current memory clock; nvmlDeviceGetClockInfo(NVML_CLOCK_MEM) (MHz).",
            "nvmlDeviceGetClockInfo:NVML_CLOCK_MEM",
            1e6,
        ),
        lambda n, h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_clock_event_reason_active",
            "gauge",
            "1 while this reason holds the clocks down (throttling); one bit of "
            "nvmlDeviceGetCurrentClocksEventReasons.",
            "nvmlDeviceGetCurrentClocksEventReasons",
            extra=("reason",),
        ),
        _clock_event_reasons,
    ),
    _ecc_metric("volatile", "corrected"),
    _ecc_metric("volatile", "uncorrected"),
    _ecc_metric("aggregate", "corrected"),
    _ecc_metric("aggregate", "uncorrected"),
    GpuMetric(
        _spec(
            "fleetscope_gpu_remapped_rows_correctable_total",
            "counter",
            "Memory rows remapped after correctable errors; nvmlDeviceGetRemappedRows()[0].",
            "nvmlDeviceGetRemappedRows.corrRows",
        ),
        _remapped(0),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_remapped_rows_uncorrectable_total",
            "counter",
            "Memory rows remapped after uncorrectable errors; nvmlDeviceGetRemappedRows()[1].",
            "nvmlDeviceGetRemappedRows.uncRows",
        ),
        _remapped(1),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_remapped_rows_pending",
            "gauge",
            "1 if a row remap waits for a GPU reset to take effect; nvmlDeviceGetRemappedRows()[2].",
            "nvmlDeviceGetRemappedRows.isPending",
        ),
        _remapped(2),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_remapped_rows_failure",
            "gauge",
            "1 if a row remap failed (no spare rows left: replace the GPU); nvmlDeviceGetRemappedRows()[3].",
            "nvmlDeviceGetRemappedRows.failureOccurred",
        ),
        _remapped(3),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_pcie_replays_total",
            "counter",
            "PCIe link-level replays (retransmissions); nvmlDeviceGetPcieReplayCounter.",
            "nvmlDeviceGetPcieReplayCounter",
        ),
        lambda n, h: n.nvmlDeviceGetPcieReplayCounter(h),
    ),
)

# nvmlDeviceGetViolationStatus policies (nvml.h nvmlPerfPolicyType_t), by label value.
VIOLATION_POLICIES = {
    "power": "NVML_PERF_POLICY_POWER",
    "thermal": "NVML_PERF_POLICY_THERMAL",
    "sync_boost": "NVML_PERF_POLICY_SYNC_BOOST",
    "board_limit": "NVML_PERF_POLICY_BOARD_LIMIT",
    "low_utilization": "NVML_PERF_POLICY_LOW_UTILIZATION",
    "reliability": "NVML_PERF_POLICY_RELIABILITY",
    "total_app_clocks": "NVML_PERF_POLICY_TOTAL_APP_CLOCKS",
    "total_base_clocks": "NVML_PERF_POLICY_TOTAL_BASE_CLOCKS",
}
# nvmlDeviceGetRetiredPages causes, by label value.
RETIREMENT_CAUSES = {
    "single_bit_ecc": "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS",
    "double_bit_ecc": "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR",
}


def _violation(nvml: Any, handle: Any, reason: str) -> float:
    policy = getattr(nvml, VIOLATION_POLICIES[reason])
    return float(nvml.nvmlDeviceGetViolationStatus(handle, policy).violationTime)


def _retired_pages(nvml: Any, handle: Any, cause: str) -> float:
    return float(len(nvml.nvmlDeviceGetRetiredPages(handle, getattr(nvml, RETIREMENT_CAUSES[cause]))))


def _processes(nvml: Any, handle: Any) -> dict[str, float]:
    # usedGpuMemory is None where the driver cannot tell (WDDM); such a process counts as 0 bytes.
    return {
        str(p.pid): float(p.usedGpuMemory or 0) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    }


def _mig_devices(nvml: Any, handle: Any) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(gpu instance, compute instance): (used bytes, total bytes)}`` of the GPU's MIG devices."""
    current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    if current != nvml.NVML_DEVICE_MIG_ENABLE:
        return {}
    devices = {}
    for index in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, index)
        except nvml.NVMLError_NotFound:
            continue  # an empty slot
        memory = nvml.nvmlDeviceGetMemoryInfo(mig)
        key = (str(nvml.nvmlDeviceGetGpuInstanceId(mig)), str(nvml.nvmlDeviceGetComputeInstanceId(mig)))
        devices[key] = (float(memory.used), float(memory.total))
    return devices


def _mig_memory(position: int) -> NvmlReader:
    def read(nvml: Any, handle: Any) -> dict[tuple[str, str], float]:
        return {key: pair[position] for key, pair in _mig_devices(nvml, handle).items()}

    return read


EXTRA_METRICS: tuple[GpuMetric, ...] = (
    GpuMetric(
        _spec(
            "fleetscope_gpu_power_limit_watts",
            "gauge",
            "Power limit the driver enforces; nvmlDeviceGetEnforcedPowerLimit (mW).",
            "nvmlDeviceGetEnforcedPowerLimit",
            1e-3,
        ),
        lambda n, h: n.nvmlDeviceGetEnforcedPowerLimit(h),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_fan_speed_ratio",
            "gauge",
            "Intended fan speed as a fraction of the maximum; nvmlDeviceGetFanSpeed (%). Absent on "
            "passively cooled boards.",
            "nvmlDeviceGetFanSpeed",
            0.01,
        ),
        lambda n, h: n.nvmlDeviceGetFanSpeed(h),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_clock_event_violation_seconds_total",
            "counter",
            "Time the clocks were held below the requested clocks, by reason (policy); "
            "nvmlDeviceGetViolationStatus().violationTime (ns).",
            "nvmlDeviceGetViolationStatus",
            1e-9,
            extra=("reason",),
        ),
        _violation,
        tuple(VIOLATION_POLICIES),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_retired_pages_total",
            "counter",
            "Memory pages retired (pre-Ampere page retirement), by cause; "
            "len(nvmlDeviceGetRetiredPages(cause)).",
            "nvmlDeviceGetRetiredPages",
            extra=("cause",),
        ),
        _retired_pages,
        tuple(RETIREMENT_CAUSES),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_retired_pages_pending",
            "gauge",
            "1 if retired pages wait for a driver reload or GPU reset; "
            "nvmlDeviceGetRetiredPagesPendingStatus.",
            "nvmlDeviceGetRetiredPagesPendingStatus",
        ),
        lambda n, h: n.nvmlDeviceGetRetiredPagesPendingStatus(h),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_pcie_transmit_bytes_per_second",
            "gauge",
            "PCIe transmit throughput over the last 20 ms; "
            "nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_TX_BYTES) (KB/s, taken as 1000 bytes).",
            "nvmlDeviceGetPcieThroughput:NVML_PCIE_UTIL_TX_BYTES",
            1e3,
        ),
        lambda n, h: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_TX_BYTES),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_pcie_receive_bytes_per_second",
            "gauge",
            "PCIe receive throughput over the last 20 ms; "
            "nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_RX_BYTES) (KB/s, taken as 1000 bytes).",
            "nvmlDeviceGetPcieThroughput:NVML_PCIE_UTIL_RX_BYTES",
            1e3,
        ),
        lambda n, h: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_RX_BYTES),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_recovery_action",
            "gauge",
            "What the driver says the GPU needs: 0 none, 1 GPU reset, 2 node reboot, 3 drain peer-to-peer, "
            "4 drain and reset; nvmlDeviceGetFieldValues(NVML_FI_DEV_GET_GPU_RECOVERY_ACTION).",
            "nvmlDeviceGetFieldValues:NVML_FI_DEV_GET_GPU_RECOVERY_ACTION",
        ),
        lambda n, h: _field_value(n, h, n.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_process_memory_used_bytes",
            "gauge",
            "Device memory used by each compute process; "
            "nvmlDeviceGetComputeRunningProcesses().usedGpuMemory. "
            "Join fleetscope_gpu_job_info on gpu for the job.",
            "nvmlDeviceGetComputeRunningProcesses",
            extra=("pid",),
        ),
        _processes,
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_mig_mode_enabled",
            "gauge",
            "1 if MIG mode is on; nvmlDeviceGetMigMode()[0].",
            "nvmlDeviceGetMigMode",
        ),
        lambda n, h: float(n.nvmlDeviceGetMigMode(h)[0] == n.NVML_DEVICE_MIG_ENABLE),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_mig_memory_used_bytes",
            "gauge",
            "Memory used in each MIG device; "
            "nvmlDeviceGetMemoryInfo(nvmlDeviceGetMigDeviceHandleByIndex()).used.",
            "nvmlDeviceGetMigDeviceHandleByIndex, nvmlDeviceGetMemoryInfo",
            extra=("gpu_instance", "compute_instance"),
        ),
        _mig_memory(0),
    ),
    GpuMetric(
        _spec(
            "fleetscope_gpu_mig_memory_total_bytes",
            "gauge",
            "Memory of each MIG device; "
            "nvmlDeviceGetMemoryInfo(nvmlDeviceGetMigDeviceHandleByIndex()).total.",
            "nvmlDeviceGetMigDeviceHandleByIndex, nvmlDeviceGetMemoryInfo",
            extra=("gpu_instance", "compute_instance"),
        ),
        _mig_memory(1),
    ),
)
METRICS = METRICS + EXTRA_METRICS


INFO = MetricSpec(
    "fleetscope_gpu_info",
    "gauge",
    "Static GPU identity, value 1: nvmlDeviceGetUUID, nvmlDeviceGetName, nvmlSystemGetDriverVersion, "
    "nvmlDeviceGetPciInfo().busId (as dddd:bb:dd.f).",
    "nvmlDeviceGetUUID, nvmlDeviceGetName, nvmlSystemGetDriverVersion, nvmlDeviceGetPciInfo",
    labels=("gpu", "uuid", "model", "driver_version", "pci_bus_id"),
)
UP = MetricSpec(
    "fleetscope_gpu_up",
    "gauge",
    "1 if NVML answered for this GPU within the deadline in this scrape, 0 if it was lost, hung or failed.",
    "NVML call outcome",
    labels=("gpu",),
)
LOST = MetricSpec(
    "fleetscope_gpu_lost",
    "gauge",
    "1 if NVML reports the GPU lost (NVML_ERROR_GPU_IS_LOST: fallen off the bus), else 0.",
    "NVML_ERROR_GPU_IS_LOST",
    labels=("gpu",),
)
TIMEOUTS = MetricSpec(
    "fleetscope_gpu_nvml_timeouts_total",
    "counter",
    "Scrapes in which this GPU's NVML calls did not return before the deadline.",
    "NVML call outcome",
    labels=("gpu",),
)


@dataclass
class _Gpu:
    index: int
    worker: Worker
    handle: Any = None
    identity: tuple[str, str, str] | None = None  # (uuid, model, canonical PCI bus id)
    # Metrics (and "metric:label value") NVML answered NOT_SUPPORTED for: a property of the board and
    # driver, so not asked again until the GPU comes back from being lost (a reset may change that).
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False
    failed: bool = False  # the last read failed before any field (handle or identity error)
    stuck: concurrent.futures.Future[Any] | None = None
    timeouts: int = 0
    values: dict[str, Any] = field(default_factory=dict)


def _text(value: str | bytes) -> str:
    # nvidia-ml-py returns str on Python 3 since 11.515; older bindings returned bytes.
    return value.decode() if isinstance(value, bytes) else value


class GpuCollector:
    """Prometheus collector for NVIDIA GPUs through NVML.

    Args:
        nvml: The NVML module or a module-like object with the same functions, constants and
            ``NVMLError_*`` classes (default: :mod:`pynvml`).
        timeout: Seconds a scrape waits for one GPU's NVML calls (and for ``nvmlInit``).
    """

    name = "gpu"

    def __init__(self, nvml: Any = pynvml, timeout: float = 2.0) -> None:
        self._nvml = nvml
        self._timeout = timeout
        self._control = Worker("nvml-control")
        self._init: concurrent.futures.Future[Any] | None = None
        self._driver_version = ""
        self._gpus: list[_Gpu] = []
        self._reported: set[tuple[int, str, str]] = set()

    def gpu_for_bus_id(self, bus_id: str) -> str | None:
        """Return the NVML index (as a label value) of the GPU at a canonical PCI bus id, if known.

        Args:
            bus_id: A bus id in :func:`~fleetscope.exporters.pci.canonical_pci_bus_id` spelling.

        Returns:
            The index as a string, or ``None`` before NVML has enumerated that GPU.
        """
        for gpu in list(self._gpus):
            if gpu.identity is not None and gpu.identity[2] == bus_id:
                return str(gpu.index)
        return None

    def gpu_count(self) -> int | None:
        """GPUs NVML enumerated; ``None`` before NVML answered ``nvmlInit``."""
        if self._init is None or not self._init.done() or self._init.exception() is not None:
            return None
        return len(self._gpus)

    def read_each(self, read: Callable[[Any, Any], Any]) -> dict[str, Any]:
        """Run ``read(nvml, handle)`` for each answering GPU, in that GPU's worker, under the deadline.

        Other collectors (``nvlink``) read NVML through this, so a hung GPU blocks none of them: a GPU
        that is lost, stuck, not yet identified, or does not answer within the deadline is left out.

        Args:
            read: The NVML reads for one GPU; may raise ``pynvml.NVMLError_*``.

        Returns:
            ``{gpu label: read's result}``.

        Raises:
            SourceUnavailable: No NVML.
        """
        self._ensure_initialised()
        pending = {}
        for gpu in list(self._gpus):
            if gpu.handle is None or gpu.lost or gpu.failed or gpu.stuck is not None:
                continue
            pending[gpu.worker.submit(functools.partial(read, self._nvml, gpu.handle))] = gpu
        done, _ = concurrent.futures.wait(pending, timeout=self._timeout)
        results = {}
        for future in done:
            gpu = pending[future]
            try:
                results[str(gpu.index)] = future.result()
            except self._nvml.NVMLError as exc:
                self._report_once(gpu.index, getattr(read, "__name__", "read"), str(exc))
        return results

    def processes(self) -> dict[str, list[int]]:
        """The compute processes on each GPU at the last scrape, by GPU label (the NVML index).

        Returns:
            ``{gpu: [pid, ...]}``; a GPU whose process list NVML did not give is absent.
        """
        found = {}
        for gpu in list(self._gpus):
            running = gpu.values.get("fleetscope_gpu_process_memory_used_bytes")
            if isinstance(running, dict):
                found[str(gpu.index)] = sorted(int(pid) for pid in running)
        return found

    def uuids(self) -> dict[str, str]:
        """GPU UUID to GPU label (the NVML index), for the GPUs identified so far."""
        return {gpu.identity[0]: str(gpu.index) for gpu in list(self._gpus) if gpu.identity is not None}

    def close(self) -> None:
        """Stop the worker threads and shut NVML down (best effort, bounded by the deadline)."""
        if self._init is not None and self._init.done() and self._init.exception() is None:
            try:
                self._control.submit(self._nvml.nvmlShutdown).result(self._timeout)
            except Exception as exc:  # shutting down: nothing to do but say so
                log.debug("nvmlShutdown: %s", exc)
        self._control.stop()
        for gpu in self._gpus:
            gpu.worker.stop()

    def collect(self) -> Iterator[Metric]:
        """Yield the GPU families for every GPU that answered in time.

        Yields:
            ``fleetscope_gpu_info``, ``_up``, ``_lost``, ``_nvml_timeouts_total`` and every metric of
            :data:`METRICS` that the GPU supports.

        Raises:
            SourceUnavailable: No NVML library or driver, or ``nvmlInit`` did not answer in time.
        """
        self._ensure_initialised()
        self._read_all()
        info, up, lost, timeouts = INFO.family(), UP.family(), LOST.family(), TIMEOUTS.family()
        for gpu in self._gpus:
            label = str(gpu.index)
            if gpu.identity is not None:
                uuid, model, bus_id = gpu.identity
                add(info, [label, uuid, model, self._driver_version, bus_id], 1.0)
            add(up, [label], 0.0 if gpu.lost or gpu.failed or gpu.stuck is not None else 1.0)
            add(lost, [label], 1.0 if gpu.lost else 0.0)
            add(timeouts, [label], float(gpu.timeouts))
        yield from (info, up, lost, timeouts)
        for metric in METRICS:
            family = metric.spec.family()
            for gpu in self._gpus:
                raw = gpu.values.get(metric.spec.name)
                if isinstance(raw, dict):
                    for extra, value in raw.items():
                        keys = list(extra) if isinstance(extra, tuple) else [extra]
                        add(family, [str(gpu.index), *keys], value * metric.spec.scale)
                elif raw is not None:
                    add(family, [str(gpu.index)], raw * metric.spec.scale)
            if family.samples:
                yield family

    def _ensure_initialised(self) -> None:
        if self._init is None or (self._init.done() and self._init.exception() is not None):
            self._init = self._control.submit(self._initialise)
        try:
            self._init.result(self._timeout)
        except concurrent.futures.TimeoutError:
            raise SourceUnavailable(f"nvmlInit did not return within {self._timeout:g}s") from None
        except self._nvml.NVMLError as exc:
            raise SourceUnavailable(f"NVML unavailable ({exc}); GPU metrics are off until it loads") from None

    def _initialise(self) -> None:
        n = self._nvml
        n.nvmlInit()
        self._driver_version = _text(n.nvmlSystemGetDriverVersion())
        self._gpus = [_Gpu(i, Worker(f"nvml-gpu{i}")) for i in range(n.nvmlDeviceGetCount())]
        log.info("NVML %s: %d GPU(s)", self._driver_version, len(self._gpus))

    def _read_all(self) -> None:
        pending: dict[concurrent.futures.Future[Any], _Gpu] = {}
        for gpu in self._gpus:
            if gpu.stuck is not None:
                if not gpu.stuck.done():
                    gpu.values = {}
                    continue
                log.warning("GPU %d answers NVML again", gpu.index)
                gpu.stuck = None
            pending[gpu.worker.submit(functools.partial(self._read_gpu, gpu))] = gpu
        done, not_done = concurrent.futures.wait(pending, timeout=self._timeout)
        for future in done:
            gpu = pending[future]
            try:
                gpu.values = future.result()
            except Exception:
                log.exception("GPU %d: reading NVML failed; its series are left out this scrape", gpu.index)
                gpu.values = {}
        for future in not_done:
            gpu = pending[future]
            log.warning(
                "GPU %d: NVML did not answer within %gs; skipping it until it does", gpu.index, self._timeout
            )
            gpu.stuck, gpu.timeouts, gpu.values = future, gpu.timeouts + 1, {}

    def _read_gpu(self, gpu: _Gpu) -> dict[str, Any]:
        """Read every metric of one GPU; runs in the GPU's worker thread."""
        n = self._nvml
        try:
            if gpu.handle is None:
                gpu.handle = n.nvmlDeviceGetHandleByIndex(gpu.index)
            if gpu.identity is None:
                bus_id = n.nvmlDeviceGetPciInfo(gpu.handle).busId
                gpu.identity = (
                    _text(n.nvmlDeviceGetUUID(gpu.handle)),
                    _text(n.nvmlDeviceGetName(gpu.handle)),
                    canonical_pci_bus_id(bus_id) or _text(bus_id),
                )
            values: dict[str, Any] = {}
            errors = 0
            for metric in METRICS:
                if metric.spec.name in gpu.unsupported:
                    continue
                try:
                    if metric.keys:
                        values[metric.spec.name] = self._read_keys(gpu, metric)
                    else:
                        values[metric.spec.name] = metric.read(n, gpu.handle)
                except n.NVMLError_GpuIsLost:
                    raise
                except n.NVMLError_NotSupported:
                    gpu.unsupported.add(metric.spec.name)
                    continue
                except n.NVMLError as exc:
                    errors += 1
                    self._report_once(gpu.index, metric.spec.name, str(exc))
            if errors and not values:
                # Every read failed (NVML_ERROR_TIMEOUT, _UNKNOWN...): the GPU is not answering.
                gpu.failed = True
                return {}
        except n.NVMLError_GpuIsLost:
            if not gpu.lost:
                log.error("GPU %d is lost (NVML_ERROR_GPU_IS_LOST): fallen off the bus", gpu.index)
            gpu.lost = True
            return {}
        except n.NVMLError as exc:
            self._report_once(gpu.index, "handle", str(exc))
            gpu.failed = True
            return {}
        if gpu.lost:
            log.warning("GPU %d answers NVML again after being lost", gpu.index)
            gpu.unsupported.clear()
        gpu.lost = gpu.failed = False
        return values

    def _read_keys(self, gpu: _Gpu, metric: GpuMetric) -> dict[str, float]:
        """Read a metric one label value at a time; runs in the GPU's worker thread.

        Raises:
            pynvml.NVMLError_NotSupported: No label value is supported.
        """
        found = {}
        for key in metric.keys:
            unsupported = f"{metric.spec.name}:{key}"
            if unsupported in gpu.unsupported:
                continue
            try:
                found[key] = metric.read(self._nvml, gpu.handle, key)
            except self._nvml.NVMLError_NotSupported:
                gpu.unsupported.add(unsupported)
        if not found:
            raise self._nvml.NVMLError_NotSupported()
        return found

    def _report_once(self, index: int, what: str, error: str) -> None:
        if (index, what, error) not in self._reported:
            self._reported.add((index, what, error))
            log.warning("GPU %d: %s: NVML error %s; that series is left out", index, what, error)


@register(
    "gpu",
    "NVIDIA GPUs through NVML: health, throttling, memory, ECC, processes, MIG.",
    settings=(
        Setting(
            "timeout_seconds",
            float,
            2.0,
            "Deadline for one GPU's NVML calls per scrape; a GPU past it is reported fleetscope_gpu_up 0 "
            "and skipped until it answers.",
            flag="timeout",
            ge=0.01,
            le=60,
            metavar="SECONDS",
        ),
    ),
)
def _build(ctx: BuildContext) -> GpuCollector:
    return GpuCollector(ctx.nvml, timeout=ctx.setting("timeout_seconds"))
