"""NVLink collector: per-link state, speed, error counters and throughput through NVML, fabric state,
and a peer-to-peer latency probe through torch CUDA.

NVML calls (nvml.h), per GPU and link ``0 .. NVML_NVLINK_MAX_LINKS-1``:

* ``nvmlDeviceGetNvLinkState``: a link NVML rejects (``NVML_ERROR_INVALID_ARGUMENT`` past the GPU's link
  count, ``NVML_ERROR_NOT_SUPPORTED`` on a board without NVLink) does not exist and is skipped.
* ``nvmlDeviceGetFieldValues`` with ``scopeId = link``: ``NVML_FI_DEV_NVLINK_GET_SPEED`` (MB/s),
  ``NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX`` / ``_RX`` (KiB, payload only).
* ``nvmlDeviceGetNvLinkErrorCounter``: ``NVML_NVLINK_ERROR_DL_CRC_FLIT``, ``_DL_CRC_DATA``,
  ``_DL_REPLAY``, ``_DL_RECOVERY``, ``_DL_ECC_DATA``.
* ``nvmlDeviceGetNvLinkRemotePciInfo``: the peer at the far end (a GPU or an NVSwitch), in
  ``fleetscope_nvlink_info``.
* ``nvmlDeviceGetGpuFabricInfo``: the NVSwitch fabric registration state (Hopper and later).

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
from typing import Any

from prometheus_client.core import Metric

from fleetscope.exporters.gpu import field_number
from fleetscope.exporters.metrics import Histogram, MetricSpec, add
from fleetscope.exporters.pci import canonical_pci_bus_id
from fleetscope.exporters.registry import BuildContext, Setting, register
from fleetscope.exporters.scrape import SourceUnavailable

log = logging.getLogger(__name__)

_LINK = ("gpu", "link")

# nvmlDeviceGetNvLinkErrorCounter counters, by metric name.
ERROR_COUNTERS = {
    "fleetscope_nvlink_crc_flit_errors_total": (
        "NVML_NVLINK_ERROR_DL_CRC_FLIT",
        "Flow-control digit CRC errors",
    ),
    "fleetscope_nvlink_crc_data_errors_total": ("NVML_NVLINK_ERROR_DL_CRC_DATA", "Data CRC errors"),
    "fleetscope_nvlink_replay_errors_total": ("NVML_NVLINK_ERROR_DL_REPLAY", "Replays (retransmissions)"),
    "fleetscope_nvlink_recovery_errors_total": ("NVML_NVLINK_ERROR_DL_RECOVERY", "Link recoveries"),
    "fleetscope_nvlink_ecc_data_errors_total": ("NVML_NVLINK_ERROR_DL_ECC_DATA", "Data ECC errors"),
}
ERROR_METRICS = {
    name: MetricSpec(
        name,
        "counter",
        f"{what}; nvmlDeviceGetNvLinkErrorCounter({const}).",
        "nvmlDeviceGetNvLinkErrorCounter",
        1.0,
        _LINK,
    )
    for name, (const, what) in ERROR_COUNTERS.items()
}
UP = MetricSpec(
    "fleetscope_nvlink_up",
    "gauge",
    "1 if the link is active; nvmlDeviceGetNvLinkState.",
    "nvmlDeviceGetNvLinkState",
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

# Probe buckets: NVLink round trips of a few bytes take 10-30 us; PCIe and a loaded GPU take longer.
PROBE_BUCKETS = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 2e-2)


def read_links(nvml: Any, handle: Any, unsupported: set[tuple[int, str]] | None = None) -> dict[str, Any]:
    """Read every NVLink of one GPU (runs in the GPU's worker thread).

    Args:
        nvml: The NVML module.
        handle: The GPU's handle.
        unsupported: ``(link, what)`` NVML answered NOT_SUPPORTED for before; skipped, and added to.

    Returns:
        ``{"links": {link: {"up": 0/1, "speed": MB/s, metric name: count, "remote": bus id, ...}},
        "fabric": state or None}``.
    """
    links: dict[int, dict[str, Any]] = {}
    skip = unsupported if unsupported is not None else set()
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        try:
            state = nvml.nvmlDeviceGetNvLinkState(handle, link)
        except (nvml.NVMLError_NotSupported, nvml.NVMLError_InvalidArgument):
            continue
        entry: dict[str, Any] = {"up": float(state == nvml.NVML_FEATURE_ENABLED)}
        for name, (const, _) in ERROR_COUNTERS.items():
            if (link, name) in skip:
                continue
            try:
                entry[name] = float(nvml.nvmlDeviceGetNvLinkErrorCounter(handle, link, getattr(nvml, const)))
            except nvml.NVMLError_NotSupported:
                skip.add((link, name))
        if (link, "remote") not in skip:
            try:
                bus_id = nvml.nvmlDeviceGetNvLinkRemotePciInfo(handle, link).busId
                entry["remote"] = canonical_pci_bus_id(bus_id) or str(bus_id)
            except nvml.NVMLError_NotSupported:
                skip.add((link, "remote"))
        links[link] = entry
    # Speed and throughput of every link in one nvmlDeviceGetFieldValues call (scopeId = link).
    fields = {
        "speed": nvml.NVML_FI_DEV_NVLINK_GET_SPEED,
        "tx": nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
        "rx": nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
    }
    wanted = [(link, key) for link in links for key in fields]
    values = (
        nvml.nvmlDeviceGetFieldValues(handle, [(fields[key], link) for link, key in wanted]) if wanted else []
    )
    for (link, key), value in zip(wanted, values, strict=True):
        try:
            links[link][key] = field_number(nvml, value)
        except nvml.NVMLError:
            links[link][key] = None
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
        self._unsupported: dict[int, set[tuple[int, str]]] = {}

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
            # What a GPU's links do not support does not change while the handle lives: ask once.
            return read_links(nvml, handle, self._unsupported.setdefault(id(handle), set()))

        readings = self._gpu.read_each(read)
        for gpu, reading in sorted(readings.items(), key=lambda item: int(item[0])):
            for link, entry in sorted(reading["links"].items()):
                labels = [gpu, str(link)]
                add(families[UP.name], labels, entry["up"])
                if entry["speed"] is not None:
                    add(families[SPEED.name], labels, entry["speed"] * SPEED.scale)
                for key, spec in THROUGHPUT.items():
                    if entry[key] is not None:
                        add(families[spec.name], labels, entry[key] * spec.scale)
                for name in ERROR_METRICS:
                    if name in entry:
                        add(families[name], labels, entry[name])
                if "remote" in entry:
                    add(families[INFO.name], [*labels, entry["remote"]], 1.0)
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
