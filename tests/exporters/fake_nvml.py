"""A FAKE NVML for tests: the pynvml functions the GPU collector calls, driven by real nvidia-smi output.

There is no GPU on the machines that run this suite. :class:`FakeNvml` stands in for the :mod:`pynvml`
module (it is injected as ``GpuCollector(nvml=FakeNvml(...))``, never monkeypatched in) and answers from
readings recorded on real machines: ``nvidia-smi -q`` text and ``nvidia-smi -q -x`` XML captures in
``tests/fixtures/nvidia-smi/`` (see its SOURCES.md). A field printed as ``N/A`` raises the real
``pynvml.NVMLError_NotSupported``; a lost GPU raises ``pynvml.NVMLError_GpuIsLost``; no driver raises
``pynvml.NVMLError_LibraryNotFound`` or ``NVMLError_DriverNotLoaded``. Constants, structures and error
classes are pynvml's own.

What is derived rather than recorded: the energy counter (nvidia-smi does not print
nvmlDeviceGetTotalEnergyConsumption) is the recorded power draw integrated over the fake's clock, which
only moves on :meth:`FakeNvml.advance`; violation times group nvidia-smi's clock-event reason counters
into NVML's policies (see ``nvmlDeviceGetViolationStatus``); retired page addresses are stand-ins (the
captures give counts). Captures of nvidia_gpu_exporter (``# load :: query (-q)`` sections) are read
from their load section. MIG devices and processes come from the capture's repeated blocks; NVLink
links and speeds from the capture's ``nvidia-smi nvlink -s`` section. NVLink error counts are not in
any capture: they raise NotSupported (or answer it per field) unless a test sets them with
:meth:`FakeNvml.set_nvlink_errors`.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml

Flat = tuple[dict[str, str], dict[str, list[str]]]

# nvidia-smi's names for the clock event (throttle) reasons -> nvml.h bit. Text output says "Idle", XML
# says "gpu_idle"; older XML says "display_clocks_setting".
_REASON_BITS = {
    "idle": pynvml.nvmlClocksEventReasonGpuIdle,
    "gpu_idle": pynvml.nvmlClocksEventReasonGpuIdle,
    "applications_clocks_setting": pynvml.nvmlClocksEventReasonApplicationsClocksSetting,
    "sw_power_cap": pynvml.nvmlClocksEventReasonSwPowerCap,
    "hw_slowdown": pynvml.nvmlClocksEventReasonHwSlowdown,
    "hw_thermal_slowdown": pynvml.nvmlClocksEventReasonHwThermalSlowdown,
    "hw_power_brake_slowdown": pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown,
    "sync_boost": pynvml.nvmlClocksEventReasonSyncBoost,
    "sw_thermal_slowdown": pynvml.nvmlClocksEventReasonSwThermalSlowdown,
    "display_clock_setting": pynvml.nvmlClocksEventReasonDisplayClockSetting,
    "display_clocks_setting": pynvml.nvmlClocksEventReasonDisplayClockSetting,
}

# Reading -> candidate paths in the flattened capture ("Section/Key" for -q text, "tag/tag" for XML).
_TEXT_PATHS = {
    "name": ["Product Name"],
    "uuid": ["GPU UUID"],
    "bus_id": ["PCI/Bus Id"],
    "temperature": ["Temperature/GPU Current Temp"],
    "memory_temperature": ["Temperature/Memory Current Temp"],
    "power_watts": [
        "GPU Power Readings/Power Draw",
        "GPU Power Readings/Instantaneous Power Draw",
        "Power Readings/Power Draw",
    ],
    "utilization_gpu": ["Utilization/Gpu"],
    "utilization_memory": ["Utilization/Memory"],
    "memory_total_mib": ["FB Memory Usage/Total"],
    "memory_used_mib": ["FB Memory Usage/Used"],
    "sm_clock_mhz": ["Clocks/SM"],
    "memory_clock_mhz": ["Clocks/Memory"],
    "pcie_replays": ["PCI/Replays Since Reset"],
    "remapped_correctable": ["Remapped Rows/Correctable Error"],
    "remapped_uncorrectable": ["Remapped Rows/Uncorrectable Error"],
    "remapped_pending": ["Remapped Rows/Pending"],
    "remapped_failure": ["Remapped Rows/Remapping Failure Occurred"],
    "power_limit_watts": [
        "GPU Power Readings/Current Power Limit",
        "Power Readings/Enforced Power Limit",
        "GPU Power Readings/Enforced Power Limit",
    ],
    "fan_percent": ["Fan Speed"],
    "retired_single_bit": ["Retired Pages/Single Bit ECC"],
    "retired_double_bit": ["Retired Pages/Double Bit ECC"],
    "retired_pending": ["Retired Pages/Pending Page Blacklist", "Retired Pages/Pending"],
    "pcie_tx_kbps": ["PCI/Tx Throughput"],
    "pcie_rx_kbps": ["PCI/Rx Throughput"],
    "recovery_action": ["GPU Recovery Action"],
    "mig_mode": ["MIG Mode/Current"],
    "fabric_state": ["Fabric/State"],
    "violation_power_us": ["Clocks Event Reasons Counters/SW Power Capping"],
    "violation_sync_boost_us": ["Clocks Event Reasons Counters/Sync Boost"],
    "violation_sw_thermal_us": ["Clocks Event Reasons Counters/SW Thermal Slowdown"],
    "violation_hw_thermal_us": ["Clocks Event Reasons Counters/HW Thermal Slowdown"],
}
# Repeated blocks (MIG devices, processes): every occurrence of these paths, in capture order.
_TEXT_LISTS = {
    "mig_gpu_instance": "MIG Device/GPU Instance ID",
    "mig_compute_instance": "MIG Device/Compute Instance ID",
    "mig_memory_total_mib": "MIG Device/Shared FB Memory Usage/Total",
    "mig_memory_used_mib": "MIG Device/Shared FB Memory Usage/Used",
    "process_pid": "Processes/Process ID",
    "process_memory_mib": "Processes/Process ID/Used GPU Memory",
}
_XML_LISTS = {
    "process_pid": "processes/process_info/pid",
    "process_memory_mib": "processes/process_info/used_memory",
}
# nvidia-smi's "GPU Recovery Action" text -> NVML_GPU_RECOVERY_ACTION_*.
_RECOVERY_ACTIONS = {
    "None": pynvml.NVML_GPU_RECOVERY_ACTION_NONE,
    "GPU Reset": pynvml.NVML_GPU_RECOVERY_ACTION_GPU_RESET,
    "Node Reboot": pynvml.NVML_GPU_RECOVERY_ACTION_NODE_REBOOT,
    "Drain P2P": pynvml.NVML_GPU_RECOVERY_ACTION_DRAIN_P2P,
    "Drain and Reset": pynvml.NVML_GPU_RECOVERY_ACTION_DRAIN_AND_RESET,
}
# Link-scoped NVLink fields (scopeId = link); the error counter fields carry the same counts as
# nvmlDeviceGetNvLinkErrorCounter's counters.
_NVLINK_ERROR_FIELDS = {
    pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC: pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT,
    pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY: pynvml.NVML_NVLINK_ERROR_DL_REPLAY,
    pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY: pynvml.NVML_NVLINK_ERROR_DL_RECOVERY,
}
_NVLINK_FIELDS = {
    pynvml.NVML_FI_DEV_NVLINK_GET_STATE,
    pynvml.NVML_FI_DEV_NVLINK_GET_SPEED,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
    *_NVLINK_ERROR_FIELDS,
}
_XML_PATHS = {
    "name": ["product_name"],
    "uuid": ["uuid"],
    "bus_id": ["pci/pci_bus_id"],
    "temperature": ["temperature/gpu_temp"],
    "memory_temperature": ["temperature/memory_temp"],
    "power_watts": ["power_readings/power_draw", "gpu_power_readings/power_draw"],
    "utilization_gpu": ["utilization/gpu_util"],
    "utilization_memory": ["utilization/memory_util"],
    "memory_total_mib": ["fb_memory_usage/total"],
    "memory_used_mib": ["fb_memory_usage/used"],
    "sm_clock_mhz": ["clocks/sm_clock"],
    "memory_clock_mhz": ["clocks/mem_clock"],
    "pcie_replays": ["pci/replay_counter"],
    "remapped_correctable": ["remapped_rows/remapped_row_corr"],
    "remapped_uncorrectable": ["remapped_rows/remapped_row_unc"],
    "remapped_pending": ["remapped_rows/remapped_row_pending"],
    "remapped_failure": ["remapped_rows/remapped_row_failure"],
    "power_limit_watts": ["power_readings/enforced_power_limit", "gpu_power_readings/current_power_limit"],
    "fan_percent": ["fan_speed"],
    "retired_single_bit": ["retired_pages/multiple_single_bit_retirement/retired_count"],
    "retired_double_bit": ["retired_pages/double_bit_retirement/retired_count"],
    "retired_pending": ["retired_pages/pending_blacklist", "retired_pages/pending_retirement"],
    "pcie_tx_kbps": ["pci/tx_util"],
    "pcie_rx_kbps": ["pci/rx_util"],
    "mig_mode": ["mig_mode/current_mig"],
}
# ECC counters: NVML's corrected/uncorrected totals are the sums of nvidia-smi's SRAM and DRAM lines.
_ECC_TEXT = {
    "corrected": ["SRAM Correctable", "DRAM Correctable"],
    "uncorrected": [
        "SRAM Uncorrectable",
        "SRAM Uncorrectable Parity",
        "SRAM Uncorrectable SEC-DED",
        "DRAM Uncorrectable",
    ],
}
_ECC_XML = {
    "corrected": ["sram_correctable", "dram_correctable"],
    "uncorrected": ["sram_uncorrectable", "dram_uncorrectable"],
}


@dataclass
class FakeGpu:
    """One GPU's recorded readings, in nvidia-smi's units (``None``: printed as N/A)."""

    values: dict[str, str | None]
    ecc: dict[tuple[int, int], int | None]
    reasons: int | None
    lists: dict[str, list[str]] = field(default_factory=dict)
    nvlinks: list[float | None] = field(default_factory=list)  # GB/s per link, None when inactive

    def number(self, key: str) -> float | None:
        """Return a reading as a number: ``30 C`` -> 30, ``Yes`` -> 1; ``None`` for N/A or absent."""
        text = self.values.get(key)
        if text is None or text in ("N/A", "[N/A]", ""):
            return None
        if text in ("Yes", "No"):
            return 1.0 if text == "Yes" else 0.0
        return float(text.split()[0])


def _text_blocks(text: str) -> tuple[str, list[Flat]]:
    """Split ``nvidia-smi -q`` output into the driver version and, per GPU, a flat ``path -> value``
    (first occurrence) and ``path -> [values]`` (every occurrence, for repeated blocks)."""
    driver, gpus = "", []
    current: dict[str, str] | None = None
    multi: dict[str, list[str]] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if re.match(r"GPU [0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:", line):
            current, multi, stack = {}, {}, []
            gpus.append((current, multi))
            continue
        key, sep, value = line.strip().partition(":")
        key = key.strip()
        if current is None:
            if key == "Driver Version":
                driver = value.strip()
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if sep:
            path = "/".join(k for _, k in stack)
            current.setdefault(path, value.strip())
            multi.setdefault(path, []).append(value.strip())
    return driver, gpus


def _xml_blocks(text: str) -> tuple[str, list[Flat]]:
    """Flatten ``nvidia-smi -q -x`` output like :func:`_text_blocks`."""
    root = ET.fromstring(text)
    gpus = []
    for gpu in root.iter("gpu"):
        flat: dict[str, str] = {}
        multi: dict[str, list[str]] = {}

        def walk(element: ET.Element, prefix: str, flat: dict[str, str] = flat, multi: dict = multi) -> None:
            for child in element:
                path = f"{prefix}{child.tag}"
                if len(child):
                    walk(child, path + "/")
                else:
                    flat.setdefault(path, (child.text or "").strip())
                    multi.setdefault(path, []).append((child.text or "").strip())

        walk(gpu, "")
        gpus.append((flat, multi))
    return root.findtext("driver_version", ""), gpus


def _gpu(flat: dict[str, str], multi: dict[str, list[str]], xml: bool) -> FakeGpu:
    paths = _XML_PATHS if xml else _TEXT_PATHS
    lists = {key: multi.get(path, []) for key, path in (_XML_LISTS if xml else _TEXT_LISTS).items()}
    values = {
        key: next((flat[p] for p in candidates if p in flat), None) for key, candidates in paths.items()
    }
    ecc: dict[tuple[int, int], int | None] = {}
    for counter, nvml_counter in (
        ("Volatile", pynvml.NVML_VOLATILE_ECC),
        ("Aggregate", pynvml.NVML_AGGREGATE_ECC),
    ):
        for error, nvml_error in (
            ("corrected", pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ("uncorrected", pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
        ):
            if xml:
                keys = [f"ecc_errors/{counter.lower()}/{k}" for k in _ECC_XML[error]]
            else:
                keys = [f"ECC Errors/{counter}/{k}" for k in _ECC_TEXT[error]]
            found = [flat[k] for k in keys if k in flat and flat[k].isdigit()]
            ecc[(nvml_error, nvml_counter)] = sum(int(v) for v in found) if found else None
    reasons: int | None = None
    for path, state in flat.items():
        section, _, name = path.partition("/")
        if section.lower().replace(" ", "_") in ("clocks_event_reasons", "clocks_throttle_reasons"):
            key = re.sub(
                r"^clocks_(event|throttle)_reason_", "", name.rsplit("/", 1)[-1].lower().replace(" ", "_")
            )
            if key in _REASON_BITS:
                reasons = (reasons or 0) | (_REASON_BITS[key] if state == "Active" else 0)
    return FakeGpu(values, ecc, reasons, lists)


def _capture_sections(text: str) -> dict[str, str]:
    """The sections of an nvidia_gpu_exporter capture file (``load :: query (-q)`` and so on)."""
    parts = re.split(r"^#{80}\n# (.+)\n(?:# \$ .*\n)?#{80}\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _nvlink_speeds(text: str) -> dict[int, list[float | None]]:
    """``nvidia-smi nvlink -s``: ``GPU 0: ...`` then ``Link 3: 26.562 GB/s`` or ``Link 3: <inactive>``."""
    speeds: dict[int, list[float | None]] = {}
    current: list[float | None] | None = None
    for line in text.splitlines():
        gpu = re.match(r"GPU (\d+):", line)
        if gpu:
            current = speeds.setdefault(int(gpu[1]), [])
            continue
        link = re.match(r"\s+Link (\d+): (?:([0-9.]+) GB/s|<inactive>)", line)
        if link and current is not None:
            current.append(float(link[2]) if link[2] else None)
    return speeds


class _Handle:
    def __init__(self, index: int) -> None:
        self.index = index


class _MigHandle(_Handle):
    """A MIG device of GPU ``index``: calls on it fail as the parent's do (lost, hung)."""

    def __init__(self, index: int, slot: int) -> None:
        super().__init__(index)
        self.slot = slot


class FakeNvml:
    """A FAKE of the :mod:`pynvml` module, driven by recorded nvidia-smi readings.

    Args:
        gpus: Recorded readings, one per GPU, in NVML index order.
        driver_version: What ``nvmlSystemGetDriverVersion`` returns.
        init_error: A ``pynvml.NVMLError_*`` class that ``nvmlInit`` raises (no library, no driver).
    """

    def __init__(
        self, gpus: list[FakeGpu], driver_version: str, init_error: type[Exception] | None = None
    ) -> None:
        self.gpus = gpus
        self._driver_version = driver_version
        self._init_error = init_error
        self._initialised = False
        self._lost: set[int] = set()
        self._errors: dict[int, type[Exception]] = {}
        self._nvlink_errors: dict[tuple[int, int, int], int] = {}
        self._hangs: dict[int, threading.Event] = {}
        self._seconds = 0.0

    @classmethod
    def from_capture(cls, path: Path, copies: int = 1) -> FakeNvml:
        """Build a fake from an ``nvidia-smi -q`` (text) or ``-q -x`` (XML) capture.

        Args:
            path: The capture file.
            copies: Repeat the capture's GPUs this many times (benchmarks scale a node up this way).
        """
        text = path.read_text()
        nvlinks: dict[int, list[float | None]] = {}
        if text.startswith("####"):
            sections = _capture_sections(text)
            text = sections["load :: query (-q)"]
            nvlinks = _nvlink_speeds(sections.get("capabilities :: nvlink -s", ""))
        xml = text.lstrip().startswith("<?xml")
        driver, flats = (_xml_blocks if xml else _text_blocks)(text)
        gpus = [_gpu(flat, multi, xml) for flat, multi in flats]
        for index, gpu in enumerate(gpus):
            gpu.nvlinks = nvlinks.get(index, [])
        return cls(gpus * copies, driver)

    @classmethod
    def without_driver(cls, error: type[Exception] = pynvml.NVMLError_LibraryNotFound) -> FakeNvml:
        """A node without the NVIDIA driver: ``nvmlInit`` raises ``error``."""
        return cls([], "", init_error=error)

    # ------------------------------------------------------------------ test controls

    def lose_gpu(self, index: int) -> None:
        """Make GPU ``index`` fall off the bus: every later call on it raises NVMLError_GpuIsLost."""
        self._lost.add(index)

    def fail_gpu(self, index: int, error: type[Exception] = pynvml.NVMLError_Timeout) -> None:
        """Make every later call on GPU ``index`` raise ``error`` (``NVMLError_Timeout``, ``_Unknown``...)."""
        self._errors[index] = error

    def set_nvlink_errors(self, index: int, link: int, counter: int, count: int) -> None:
        """Give GPU ``index``'s link an NVLink error count (``pynvml.NVML_NVLINK_ERROR_DL_*``)."""
        self._nvlink_errors[(index, link, counter)] = count

    def set_processes(self, index: int, processes: list[tuple[int, int]]) -> None:
        """Replace GPU ``index``'s recorded compute processes with ``[(pid, used bytes)]`` (a test starts
        real processes and puts their pids on a GPU)."""
        lists = self.gpus[index].lists
        lists["process_pid"] = [str(pid) for pid, _ in processes]
        lists["process_memory_mib"] = [f"{used // 2**20} MiB" for _, used in processes]

    def hang_gpu(self, index: int) -> None:
        """Make calls on GPU ``index`` block (a hung driver call) until :meth:`release_gpu`."""
        self._hangs[index] = threading.Event()

    def release_gpu(self, index: int) -> None:
        """Let the stuck calls on GPU ``index`` return, and later calls run normally."""
        self._hangs.pop(index).set()

    def advance(self, seconds: float) -> None:
        """Move the fake clock that the energy counters integrate power over."""
        self._seconds += seconds

    # ------------------------------------------------------------------ pynvml's names

    def __getattr__(self, name: str) -> Any:
        # Constants, structures and error classes come from pynvml itself, so `except nvml.NVMLError_X`
        # in the collector catches exactly what the real library raises.
        if name.startswith(("NVML_", "NVMLError", "nvmlClocksEventReason", "c_nvml")):
            # Kept on the instance: later lookups are plain attribute reads, as on the pynvml module.
            value = self.__dict__[name] = getattr(pynvml, name)
            return value
        raise AttributeError(f"FakeNvml does not implement {name}")

    def nvmlInit(self) -> None:
        if self._init_error is not None:
            raise self._init_error()
        self._initialised = True

    def nvmlShutdown(self) -> None:
        self._check_init()
        self._initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return self._driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check_init()
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError_InvalidArgument()
        self._gpu(_Handle(index))
        return _Handle(index)

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> Any:
        info = pynvml.nvmlPciInfo_t()
        info.busId = self._str(handle, "bus_id").encode()
        return info

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._str(handle, "uuid")

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._str(handle, "name")

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError_InvalidArgument()
        return int(self._number(handle, "temperature"))

    def nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: list[int | tuple[int, int]]) -> Any:
        gpu = self._gpu(handle)
        # As pynvml does: an array of nvmlFieldValue_t with fieldId and scopeId set, that NVML fills in;
        # each entry gets its own nvmlReturn.
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for value, requested in zip(values, field_ids, strict=True):
            field_id, scope = requested if isinstance(requested, tuple) else (requested, 0)
            value.fieldId, value.scopeId = field_id, scope
            value.nvmlReturn, reading = self._field(gpu, handle.index, field_id, scope)
            if value.nvmlReturn == pynvml.NVML_SUCCESS:
                if field_id in _NVLINK_ERROR_FIELDS:  # counters are unsigned long long in NVML
                    value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                    value.value.ullVal = int(reading)
                else:
                    value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                    value.value.uiVal = int(reading)
        return values

    def _field(self, gpu: FakeGpu, index: int, field_id: int, scope: int) -> tuple[int, float]:
        """``(nvmlReturn, reading)`` of one field value; the reading is 0 unless the return is success."""
        reading: float | None
        if field_id in _NVLINK_FIELDS:
            if not gpu.nvlinks:
                return pynvml.NVML_ERROR_NOT_SUPPORTED, 0
            if not 0 <= scope < len(gpu.nvlinks):
                return pynvml.NVML_ERROR_INVALID_ARGUMENT, 0
            speed = gpu.nvlinks[scope]
            if field_id == pynvml.NVML_FI_DEV_NVLINK_GET_STATE:
                reading = pynvml.NVML_FEATURE_ENABLED if speed is not None else pynvml.NVML_FEATURE_DISABLED
            elif field_id == pynvml.NVML_FI_DEV_NVLINK_GET_SPEED:
                reading = round(speed * 1000) if speed is not None else 0  # GB/s -> MB/s
            elif field_id in _NVLINK_ERROR_FIELDS:
                # the captures hold no NVLink error counts; tests set them
                reading = self._nvlink_errors.get((index, scope, _NVLINK_ERROR_FIELDS[field_id]))
            else:
                reading = None  # throughput: not in the captures
        elif field_id == pynvml.NVML_FI_DEV_MEMORY_TEMP:
            reading = gpu.number("memory_temperature")
        elif field_id == pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION:
            reading = _RECOVERY_ACTIONS.get(gpu.values.get("recovery_action") or "")
        else:
            reading = None
        if reading is None:
            return pynvml.NVML_ERROR_NOT_SUPPORTED, 0
        return pynvml.NVML_SUCCESS, reading

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return round(self._number(handle, "power_watts") * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        return round(self._number(handle, "power_watts") * 1000 * self._seconds)

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        return pynvml.c_nvmlUtilization_t(
            gpu=int(self._number(handle, "utilization_gpu")),
            memory=int(self._number(handle, "utilization_memory")),
        )

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> Any:
        if isinstance(handle, _MigHandle):
            lists = self._gpu(handle).lists
            total = int(lists["mig_memory_total_mib"][handle.slot].split()[0]) * 1024 * 1024
            used = int(lists["mig_memory_used_mib"][handle.slot].split()[0]) * 1024 * 1024
            return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)
        total = int(self._number(handle, "memory_total_mib")) * 1024 * 1024
        used = int(self._number(handle, "memory_used_mib")) * 1024 * 1024
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock: int) -> int:
        keys = {pynvml.NVML_CLOCK_SM: "sm_clock_mhz", pynvml.NVML_CLOCK_MEM: "memory_clock_mhz"}
        if clock not in keys:
            raise pynvml.NVMLError_NotSupported()
        return int(self._number(handle, keys[clock]))

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        reasons = self._gpu(handle).reasons
        if reasons is None:
            raise pynvml.NVMLError_NotSupported()
        return reasons

    def nvmlDeviceGetTotalEccErrors(self, handle: _Handle, error_type: int, counter_type: int) -> int:
        count = self._gpu(handle).ecc.get((error_type, counter_type))
        if count is None:
            raise pynvml.NVMLError_NotSupported()
        return count

    def nvmlDeviceGetRemappedRows(self, handle: _Handle) -> tuple[int, int, int, int]:
        keys = ("remapped_correctable", "remapped_uncorrectable", "remapped_pending", "remapped_failure")
        corr, unc, pending, failure = (int(self._number(handle, key)) for key in keys)
        return corr, unc, pending, failure

    def nvmlDeviceGetPcieReplayCounter(self, handle: _Handle) -> int:
        return int(self._number(handle, "pcie_replays"))

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return round(self._number(handle, "power_limit_watts") * 1000)

    def nvmlDeviceGetFanSpeed(self, handle: _Handle) -> int:
        return int(self._number(handle, "fan_percent"))

    def nvmlDeviceGetViolationStatus(self, handle: _Handle, policy: int) -> Any:
        # nvidia-smi prints the clock-event reason counters (us); NVML's violation policies group them:
        # power <- SW Power Capping, thermal <- SW + HW Thermal Slowdown, sync boost <- Sync Boost. The
        # other policies are not in the captures and raise NotSupported.
        keys = {
            pynvml.NVML_PERF_POLICY_POWER: ["violation_power_us"],
            pynvml.NVML_PERF_POLICY_THERMAL: ["violation_sw_thermal_us", "violation_hw_thermal_us"],
            pynvml.NVML_PERF_POLICY_SYNC_BOOST: ["violation_sync_boost_us"],
        }.get(policy)
        if keys is None:
            self._gpu(handle)
            raise pynvml.NVMLError_NotSupported()
        micros = sum(self._number(handle, key) for key in keys)
        return pynvml.c_nvmlViolationTime_t(referenceTime=0, violationTime=int(micros * 1000))

    def nvmlDeviceGetRetiredPages(self, handle: _Handle, cause: int) -> list[int]:
        key = {
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS: "retired_single_bit",
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR: "retired_double_bit",
        }[cause]
        # The captures give the count only; the page addresses returned are stand-ins.
        return list(range(int(self._number(handle, key))))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: _Handle) -> int:
        return int(self._number(handle, "retired_pending"))

    def nvmlDeviceGetPcieThroughput(self, handle: _Handle, counter: int) -> int:
        keys = {
            pynvml.NVML_PCIE_UTIL_TX_BYTES: "pcie_tx_kbps",
            pynvml.NVML_PCIE_UTIL_RX_BYTES: "pcie_rx_kbps",
        }
        return int(self._number(handle, keys[counter]))

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[Any]:
        lists = self._gpu(handle).lists
        processes = []
        for pid, memory in zip(lists["process_pid"], lists["process_memory_mib"], strict=True):
            info = pynvml.c_nvmlProcessInfo_v3_t(
                pid=int(pid),
                usedGpuMemory=int(memory.split()[0]) * 1024 * 1024,
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
            processes.append(pynvml.nvmlStructToFriendlyObject(info))
        return processes

    def nvmlDeviceGetNvLinkState(self, handle: _Handle, link: int) -> int:
        links = self._gpu(handle).nvlinks
        if not links:
            raise pynvml.NVMLError_NotSupported()
        if not 0 <= link < len(links):
            raise pynvml.NVMLError_InvalidArgument()
        return pynvml.NVML_FEATURE_ENABLED if links[link] is not None else pynvml.NVML_FEATURE_DISABLED

    def nvmlDeviceGetNvLinkErrorCounter(self, handle: _Handle, link: int, counter: int) -> int:
        self.nvmlDeviceGetNvLinkState(handle, link)
        count = self._nvlink_errors.get((handle.index, link, counter))
        if count is None:  # the captures hold no NVLink error counts; tests set them
            raise pynvml.NVMLError_NotSupported()
        return count

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: _Handle, link: int) -> Any:
        self.nvmlDeviceGetNvLinkState(handle, link)
        raise pynvml.NVMLError_NotSupported()  # single-GPU captures: the far ends are not recorded

    def nvmlDeviceGetGpuFabricInfo(self, handle: _Handle, info: Any) -> None:
        state = self._gpu(handle).values.get("fabric_state")
        states = {
            "Not Started": pynvml.NVML_GPU_FABRIC_STATE_NOT_STARTED,
            "In Progress": pynvml.NVML_GPU_FABRIC_STATE_IN_PROGRESS,
            "Completed": pynvml.NVML_GPU_FABRIC_STATE_COMPLETED,
        }
        if state not in states:
            raise pynvml.NVMLError_NotSupported()
        info.state = states[state]

    def nvmlDeviceGetMigMode(self, handle: _Handle) -> tuple[int, int]:
        mode = self._gpu(handle).values.get("mig_mode")
        if mode not in ("Enabled", "Disabled"):
            raise pynvml.NVMLError_NotSupported()
        value = pynvml.NVML_DEVICE_MIG_ENABLE if mode == "Enabled" else pynvml.NVML_DEVICE_MIG_DISABLE
        return value, value

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        # Real H100s answer 7 and leave the unused slots NOT_FOUND; the captures list the used ones.
        return len(self._gpu(handle).lists["mig_gpu_instance"]) + 1

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, index: int) -> _MigHandle:
        if index >= len(self._gpu(handle).lists["mig_gpu_instance"]):
            raise pynvml.NVMLError_NotFound()
        return _MigHandle(handle.index, index)

    def nvmlDeviceGetGpuInstanceId(self, handle: _MigHandle) -> int:
        return int(self._gpu(handle).lists["mig_gpu_instance"][handle.slot])

    def nvmlDeviceGetComputeInstanceId(self, handle: _MigHandle) -> int:
        return int(self._gpu(handle).lists["mig_compute_instance"][handle.slot])

    # ------------------------------------------------------------------ helpers

    def _check_init(self) -> None:
        if not self._initialised:
            raise pynvml.NVMLError_Uninitialized()

    def _gpu(self, handle: _Handle) -> FakeGpu:
        self._check_init()
        hang = self._hangs.get(handle.index)
        if hang is not None:
            hang.wait()
        if handle.index in self._lost:
            raise pynvml.NVMLError_GpuIsLost()
        if handle.index in self._errors:
            raise self._errors[handle.index]()
        return self.gpus[handle.index]

    def _number(self, handle: _Handle, key: str) -> float:
        value = self._gpu(handle).number(key)
        if value is None:
            raise pynvml.NVMLError_NotSupported()
        return value

    def _str(self, handle: _Handle, key: str) -> str:
        value = self._gpu(handle).values.get(key)
        if value is None:
            raise pynvml.NVMLError_NotSupported()
        return value
