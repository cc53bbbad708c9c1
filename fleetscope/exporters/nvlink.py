"""NVLink collector: per-link state, speed, error counters and throughput through NVML, fabric state,
and a peer-to-peer latency probe through torch CUDA.

NVML calls (nvml.h), per GPU:

* ``nvmlDeviceGetFieldValues``, ONE call per scrape for every link and every link-scoped field
  (``scopeId = link``): ``NVML_FI_DEV_NVLINK_GET_STATE``, ``_GET_SPEED`` (MB/s),
  ``_THROUGHPUT_DATA_TX`` / ``_RX`` (KiB, payload only) and the data-link error counters
  ``_ERROR_DL_CRC`` (flit CRC), ``_ERROR_DL_REPLAY``, ``_ERROR_DL_RECOVERY``. NVML fills the whole array
  in C; the links a GPU has are learnt once, from ``_GET_STATE`` over ``0 .. NVML_NVLINK_MAX_LINKS-1``
  (a link past the GPU's count, or a board without NVLink, answers an error for its entry).
* ``nvmlDeviceGetNvLinkErrorCounter`` for the two counters no link-scoped field gives:
  ``NVML_NVLINK_ERROR_DL_CRC_DATA`` and ``_DL_ECC_DATA``.
* ``nvmlDeviceGetNvLinkRemotePciInfo``: the peer at the far end (a GPU or an NVSwitch), in
  ``fleetscope_nvlink_info``.
* ``nvmlDeviceGetGpuFabricInfo``: the NVSwitch fabric registration state (Hopper and later).

What a link answers NOT_SUPPORTED (or INVALID_ARGUMENT) for is a property of the board and driver: it is
asked once and not again while the GPU's handle lives (Blackwell drops the ``_ERROR_DL_*`` fields, for
one).

Every call runs in the GPU collector's per-GPU worker under its deadline
(:meth:`~fleetscope.exporters.gpu.GpuCollector.read_each`), so a hung GPU hangs nothing here; the
collector needs the ``gpu`` collector and reports unavailable without it.

The probe (:class:`P2PLatencyProbe`) times small device-to-device round trips between every pair of
GPUs that can reach each other peer to peer, every ``probe_interval_seconds``, into
``fleetscope_nvlink_probe_latency_seconds{gpu,peer}``. It stays off, without importing torch, when the
node has fewer than two GPUs or torch is not installed, and off when torch sees no CUDA peers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import Metric

from fleetscope.exporters.gpu import field_values
from fleetscope.exporters.metrics import Histogram, MetricSpec, add
from fleetscope.exporters.pci import canonical_pci_bus_id
from fleetscope.exporters.registry import BuildContext, Setting, register
from fleetscope.exporters.scrape import SourceUnavailable

log = logging.getLogger(__name__)

_LINK = ("gpu", "link")

# Link-scoped fields of nvmlDeviceGetFieldValues, by the key read_links files them under.
LINK_FIELDS = {
    "up": "NVML_FI_DEV_NVLINK_GET_STATE",
    "speed": "NVML_FI_DEV_NVLINK_GET_SPEED",
    "tx": "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX",
    "rx": "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX",
    "fleetscope_nvlink_crc_flit_errors_total": "NVML_FI_DEV_NVLINK_ERROR_DL_CRC",
    "fleetscope_nvlink_replay_errors_total": "NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY",
    "fleetscope_nvlink_recovery_errors_total": "NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY",
}
# Counters without a link-scoped field: nvmlDeviceGetNvLinkErrorCounter(link, counter), by metric name.
ERROR_COUNTER_CALLS = {
    "fleetscope_nvlink_crc_data_errors_total": "NVML_NVLINK_ERROR_DL_CRC_DATA",
    "fleetscope_nvlink_ecc_data_errors_total": "NVML_NVLINK_ERROR_DL_ECC_DATA",
}
_ERRORS = {
    "fleetscope_nvlink_crc_flit_errors_total": "Flow-control digit (flit) CRC errors",
    "fleetscope_nvlink_crc_data_errors_total": "Data CRC errors",
    "fleetscope_nvlink_replay_errors_total": "Replays (retransmissions)",
    "fleetscope_nvlink_recovery_errors_total": "Link recoveries",
    "fleetscope_nvlink_ecc_data_errors_total": "Data ECC errors",
}


def _error_source(name: str) -> str:
    if name in LINK_FIELDS:
        return f"nvmlDeviceGetFieldValues({LINK_FIELDS[name]}, scopeId=link)"
    return f"nvmlDeviceGetNvLinkErrorCounter({ERROR_COUNTER_CALLS[name]})"


ERROR_METRICS = {
    name: MetricSpec(name, "counter", f"{what}; {_error_source(name)}.", _error_source(name), 1.0, _LINK)
    for name, what in _ERRORS.items()
}
UP = MetricSpec(
    "fleetscope_nvlink_up",
    "gauge",
    "1 if the link is active; nvmlDeviceGetFieldValues(NVML_FI_DEV_NVLINK_GET_STATE, scopeId=link).",
    "NVML_FI_DEV_NVLINK_GET_STATE",
    labels=_LINK,
)
SPEED = MetricSpec(
    "fleetscope_nvlink_speed_bytes_per_second",
    "gauge",
    "Link speed; nvmlDeviceGetFieldValues(NVML_FI_DEV_NVLINK_GET_SPEED, scopeId=link) (MB/s).",
    "NVML_FI_DEV_NVLINK_GET_SPEED",
    1e6,
    _LINK,
)
THROUGHPUT = {
    "tx": MetricSpec(
        "fleetscope_nvlink_transmit_bytes_total",
        "counter",
        "Payload transmitted; nvmlDeviceGetFieldValues(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, scopeId=link) "
        "(KiB).",
        "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX",
        1024.0,
        _LINK,
    ),
    "rx": MetricSpec(
        "fleetscope_nvlink_receive_bytes_total",
        "counter",
        "Payload received; nvmlDeviceGetFieldValues(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, scopeId=link) "
        "(KiB).",
        "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX",
        1024.0,
        _LINK,
    ),
}
INFO = MetricSpec(
    "fleetscope_nvlink_info",
    "gauge",
    "Link peer, value 1: nvmlDeviceGetNvLinkRemotePciInfo().busId (as dddd:bb:dd.f; a GPU or an NVSwitch).",
    "nvmlDeviceGetNvLinkRemotePciInfo",
    labels=(*_LINK, "remote_pci_bus_id"),
)
FABRIC = MetricSpec(
    "fleetscope_gpu_fabric_state",
    "gauge",
    "NVSwitch fabric registration: 1 not started, 2 in progress, 3 completed; "
    "nvmlDeviceGetGpuFabricInfo().state.",
    "nvmlDeviceGetGpuFabricInfo",
    labels=("gpu",),
)
PROBE_LATENCY = MetricSpec(
    "fleetscope_nvlink_probe_latency_seconds",
    "histogram",
    "Round trip of a small tensor GPU -> peer -> GPU through torch CUDA peer-to-peer copies.",
    "torch.Tensor.copy_ between CUDA devices",
    labels=("gpu", "peer"),
)
PROBE_UP = MetricSpec(
    "fleetscope_nvlink_probe_up",
    "gauge",
    "1 while the peer-to-peer latency probe runs; 0 when it is off (no peers, no torch, no CUDA).",
    "probe state",
)
METRICS = (UP, SPEED, *ERROR_METRICS.values(), *THROUGHPUT.values(), INFO, FABRIC, PROBE_LATENCY, PROBE_UP)

# read_links' keys -> the metric they feed (``"remote"`` feeds the info series).
_SPEC_OF = {"up": UP, "speed": SPEED, **THROUGHPUT, **ERROR_METRICS}

# Probe buckets: NVLink round trips of a few bytes take 10-30 us; PCIe and a loaded GPU take longer.
PROBE_BUCKETS = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 2e-2)


@dataclass
class LinkPlan:
    """What one GPU's links answer, learnt on its first read and kept while its handle lives.

    Attributes:
        links: The GPU's link numbers; ``None`` until learnt.
        unsupported: ``(link, key)`` NVML answered NOT_SUPPORTED or INVALID_ARGUMENT for (a key of
            :data:`LINK_FIELDS` or :data:`ERROR_COUNTER_CALLS`, or ``"remote"``); not asked again.
    """

    links: tuple[int, ...] | None = None
    unsupported: set[tuple[int, str]] = field(default_factory=set)


def read_links(nvml: Any, handle: Any, plan: LinkPlan | None = None) -> dict[str, Any]:
    """Read every NVLink of one GPU (runs in the GPU's worker thread).

    Args:
        nvml: The NVML module.
        handle: The GPU's handle.
        plan: What earlier reads learnt of this GPU's links; learnt now and updated when given.

    Returns:
        ``{"links": {link: {"up": 0/1, "speed": MB/s, "tx"/"rx": KiB, metric name: count,
        "remote": bus id}}, "fabric": state or None}``; a key is absent where NVML gave no value.

    Raises:
        pynvml.NVMLError: The GPU's own errors (lost, timeout); ``NVMLError_NotSupported`` when it has
            neither NVLinks nor a fabric state.
    """
    plan = plan if plan is not None else LinkPlan()
    gone = (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_INVALID_ARGUMENT)
    success, enabled = nvml.NVML_SUCCESS, nvml.NVML_FEATURE_ENABLED
    if plan.links is None:
        state = nvml.NVML_FI_DEV_NVLINK_GET_STATE
        answers = field_values(nvml, handle, [(state, link) for link in range(nvml.NVML_NVLINK_MAX_LINKS)])
        plan.links = tuple(link for link, (code, _) in enumerate(answers) if code not in gone)
    field_ids = {key: getattr(nvml, const) for key, const in LINK_FIELDS.items()}
    wanted = [
        (link, key) for link in plan.links for key in LINK_FIELDS if (link, key) not in plan.unsupported
    ]
    values = field_values(nvml, handle, [(field_ids[key], link) for link, key in wanted]) if wanted else []
    links: dict[int, dict[str, Any]] = {link: {} for link in plan.links}
    for (link, key), (code, number) in zip(wanted, values, strict=True):
        if code in gone:
            plan.unsupported.add((link, key))
        elif code == success:
            links[link][key] = number
    for link, entry in links.items():
        if "up" in entry:
            entry["up"] = float(entry["up"] == enabled)
        for name, const in ERROR_COUNTER_CALLS.items():
            if (link, name) not in plan.unsupported:
                try:
                    entry[name] = float(
                        nvml.nvmlDeviceGetNvLinkErrorCounter(handle, link, getattr(nvml, const))
                    )
                except (nvml.NVMLError_NotSupported, nvml.NVMLError_InvalidArgument):
                    plan.unsupported.add((link, name))
        if (link, "remote") not in plan.unsupported:
            try:
                bus_id = nvml.nvmlDeviceGetNvLinkRemotePciInfo(handle, link).busId
                entry["remote"] = canonical_pci_bus_id(bus_id) or str(bus_id)
            except (nvml.NVMLError_NotSupported, nvml.NVMLError_InvalidArgument):
                plan.unsupported.add((link, "remote"))
    fabric = None
    try:
        info = nvml.c_nvmlGpuFabricInfo_t()
        nvml.nvmlDeviceGetGpuFabricInfo(handle, info)
        if info.state != nvml.NVML_GPU_FABRIC_STATE_NOT_SUPPORTED:
            fabric = float(info.state)
    except nvml.NVMLError_NotSupported:
        pass
    if not links and fabric is None:
        raise nvml.NVMLError_NotSupported()
    return {"links": links, "fabric": fabric}


class P2PLatencyProbe:
    """Times peer-to-peer round trips between GPU pairs in a daemon thread, at a low duty cycle.

    Args:
        gpu_count: Returns how many GPUs NVML sees (``None`` until NVML answered).
        interval: Seconds between rounds (one round: ``repeats`` round trips per pair).
        repeats: Round trips timed per pair and round.
    """

    def __init__(self, gpu_count: Any, interval: float = 30.0, repeats: int = 5) -> None:
        self._gpu_count = gpu_count
        self._interval = interval
        self._repeats = repeats
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.histograms: dict[tuple[str, str], Histogram] = {}
        self.running = False
        self.reason = "not started"

    def start(self) -> None:
        """Start the probe thread (it decides on its own whether there is anything to probe)."""
        self._thread = threading.Thread(target=self._run, name="nvlink-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the probe thread."""
        self._stop.set()

    def _off(self, reason: str) -> None:
        self.running, self.reason = False, reason
        log.info("NVLink latency probe off: %s", reason)

    def _run(self) -> None:
        try:
            self._probe()
        except Exception as exc:  # never take the exporter down for a probe
            log.exception("NVLink latency probe failed")
            self._off(f"failed: {exc}")

    def _probe(self) -> None:
        count = self._gpu_count()
        while count is None and not self._stop.wait(1.0):
            count = self._gpu_count()
        if count is None or count < 2:
            self._off("fewer than two GPUs: no peers")
            return
        if importlib.util.find_spec("torch") is None:
            self._off("torch is not installed")
            return
        # CUDA numbers devices fastest first unless told otherwise; NVML numbers them by PCI bus id.
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        import torch

        if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
            self._off("torch sees fewer than two CUDA devices")
            return
        n = torch.cuda.device_count()
        pairs = [
            (i, j) for i in range(n) for j in range(n) if i != j and torch.cuda.can_device_access_peer(i, j)
        ]
        if not pairs:
            self._off("no GPU pair can access each other peer to peer")
            return
        buffers = {i: torch.zeros(8, device=f"cuda:{i}") for i in range(n)}
        self.histograms = {(str(i), str(j)): Histogram(PROBE_BUCKETS) for i, j in pairs}
        self.running, self.reason = True, ""
        while not self._stop.is_set():
            for i, j in pairs:
                for _ in range(self._repeats):
                    torch.cuda.synchronize(i)
                    start = time.perf_counter()
                    buffers[j].copy_(buffers[i])
                    buffers[i].copy_(buffers[j])
                    torch.cuda.synchronize(i)
                    self.histograms[(str(i), str(j))].observe(time.perf_counter() - start)
            self._stop.wait(self._interval)


class NvlinkCollector:
    """Prometheus collector for NVLink links and the latency probe.

    Args:
        gpu: The GPU collector, whose per-GPU workers run the NVML calls; ``None`` when it is off.
        probe: The latency probe, or ``None`` for none.
    """

    name = "nvlink"

    def __init__(self, gpu: Any, probe: P2PLatencyProbe | None = None) -> None:
        self._gpu = gpu
        self.probe = probe
        self._plans: dict[int, LinkPlan] = {}

    def start(self) -> None:
        """Start the probe, if any."""
        if self.probe is not None:
            self.probe.start()

    def close(self) -> None:
        """Stop the probe, if any."""
        if self.probe is not None:
            self.probe.stop()

    def collect(self) -> Iterator[Metric]:
        """Yield the link families.

        Raises:
            SourceUnavailable: No GPU collector, no NVML, or no GPU with NVLink.
        """
        if self._gpu is None:
            raise SourceUnavailable("the nvlink collector reads NVML through the gpu collector, which is off")
        families = {spec.name: spec.family() for spec in METRICS}

        def read(nvml: Any, handle: Any) -> dict[str, Any]:
            # What a GPU's links are and support does not change while the handle lives: learn it once.
            return read_links(nvml, handle, self._plans.setdefault(id(handle), LinkPlan()))

        readings = self._gpu.read_each(read)
        for gpu, reading in sorted(readings.items(), key=lambda item: int(item[0])):
            for link, entry in sorted(reading["links"].items()):
                labels = [gpu, str(link)]
                for key, value in entry.items():
                    if key == "remote":
                        add(families[INFO.name], [*labels, value], 1.0)
                    else:
                        spec = _SPEC_OF[key]
                        add(families[spec.name], labels, value * spec.scale)
            if reading["fabric"] is not None:
                add(families[FABRIC.name], [gpu], reading["fabric"])
        if self.probe is not None:
            add(families[PROBE_UP.name], [], 1.0 if self.probe.running else 0.0)
            for (gpu, peer), histogram in sorted(self.probe.histograms.items()):
                histogram.add_to(families[PROBE_LATENCY.name], [gpu, peer])
        for family in families.values():
            if family.samples:
                yield family
        if not readings:
            raise SourceUnavailable("no GPU answered the NVLink queries (no NVLink on this node?)")


@register(
    "nvlink",
    "NVLink state, speed, CRC/replay/recovery errors, throughput, fabric state; P2P latency probe.",
    settings=(
        Setting(
            "probe_interval_seconds",
            float,
            30.0,
            "Seconds between rounds of the GPU peer-to-peer latency probe (torch CUDA); 0 turns it off. "
            "Off anyway with fewer than two GPUs or without torch.",
            flag="probe-interval",
            ge=0,
            le=3600,
            metavar="SECONDS",
        ),
    ),
    needs=("gpu",),
)
def _build(ctx: BuildContext) -> NvlinkCollector:
    gpu = ctx.built.get("gpu")
    interval = ctx.setting("probe_interval_seconds")
    probe = P2PLatencyProbe(gpu.gpu_count, interval) if gpu is not None and interval > 0 else None
    return NvlinkCollector(gpu, probe)
