"""The simulated cluster: what each node's ``fleetscope exporter`` would serve at a given moment.

Every value is a function of the simulation time, so a scrape, a Prometheus-style query ``offset`` the
window and a benchmark that steps its own clock all see one consistent cluster, and nothing runs between
reads. Names, types, help texts and labels come from the exporter's own reviewed metric tables
(:mod:`fleetscope.exporters.gpu`, ``nvlink``, ``infiniband``, ``training``, ``xid``, ``host``,
``scrape``), and kernel-log lines go through the exporter's own :class:`~fleetscope.exporters.xid.
KernelLogParser`, so the series and ``/events`` entries are shaped exactly as a real exporter's.

**Levels** (readings from real machines): an 8x H100 SXM 80GB HBM3 node, GPU bus ids, model and driver
from ``tests/fixtures/nvidia-smi/h100-sxm-80gb-x8_drv565.57.01.txt``; per-GPU readings under load from
nvidia_gpu_exporter's capture ``linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt`` (gpu-burn): 59 C GPU,
55 C HBM, 588.39 W of a 700 W limit, 100 % utilisation, 11 % memory utilisation, SM clock 1980 MHz, memory
clock 2619 MHz, 81559 MiB of memory, T.Limit 26 C above the current temperature and slowdown at T.Limit
-2 C (so slowdown at 87 C), no ECC errors and no rows remapped. NVLink: 18 links per GPU at
26,562 MB/s (``nvidia-smi nvlink -s``, tests/golden/nvlink_h200.prom), fabric state 3 (NVSwitch systems),
and the peer-to-peer latency probe's round trips between every pair of GPUs (about 16 us; the sources
are at ``_PROBE_MEDIAN``).
EFA: four devices per node, as on p4d.24xlarge, with the counter files of the EFA driver. Each GPU,
link and rank gets a small fixed offset, so peers look alike but not identical.

**Training**: one data-parallel job over the whole cluster, a rank per GPU (rank = node x 8 + local
rank), 0.95 s steps (data wait 0.02 s, forward 0.28 s, backward 0.52 s, optimizer 0.05 s, collective wait
the rest), already 12,000 steps in when the simulation starts. Synchronous training waits for its
slowest rank at every all-reduce: a slow rank makes every step longer and is the rank that waits least
in collectives; a rank that stops (lost GPU, stalled data loader, dead node) stops every rank's steps,
and the others sit in the collective (NCCL spins, so their GPUs stay busy).

**Faults** (what the exporter's collectors would read; :mod:`fleetscope.simulate.faults`):

- ``xid79``: the driver logs ``NVRM: Xid (PCI:...): 79, ... GPU has fallen off the bus.`` (NVIDIA Xid
  catalogue: the GPU is no longer reachable over PCIe); NVML answers ``NVML_ERROR_GPU_IS_LOST``, so the
  GPU collector keeps ``fleetscope_gpu_info``, reports ``fleetscope_gpu_up 0`` and ``fleetscope_gpu_lost 1``
  and drops every other series of that GPU (its NVLinks too); the Xid counter rises by one.
- ``ecc_storm``: volatile and aggregate correctable ECC counts rise 40/s, a row is remapped a minute.
- ``thermal``: the GPU at 89 C (HBM 80 C), ``hw_thermal_slowdown`` and ``sw_thermal_slowdown`` clock
  event reasons active, SM clock cut to 1410 MHz, thermal violation time rising 1 s/s; its rank slows.
- ``nvlink_crc``: CRC flit and replay errors rise 120/s, CRC data errors 4/s, a recovery a minute.
- ``efa_retransmit``: retransmitted packets rise 3,000/s (8 KiB each), retransmit timeouts 2/s, an
  impaired remote connection every 20 s; every step's collective takes 0.4 s longer.
- ``straggler``: the rank computes 1.6x slower.
- ``dataloader_stall``: the rank's data loader stops; its GPU idles (0 % utilisation, 70 W).
- ``slow_checkpoint``: the node's ranks spend 0.8 s more per step outside the timed phases (writing
  the checkpoint) and the node's CPUs wait on I/O (``fleetscope_host_cpu_seconds_total{mode="iowait"}``).
- ``dead_node``: the node's exporter stops answering (the server stops listening).

Healthy noise: EFA devices retransmit a packet every few seconds, as real fabrics do.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from fleetscope.exporters import gpu, host, infiniband, nvlink, scrape, training, xid
from fleetscope.exporters.metrics import MetricSpec, add
from fleetscope.simulate.faults import Fault, node_name

GPUS = 8
#: GPUs of the recorded 8x H100 SXM node: PCI bus ids by index.
BUS_IDS = (
    "0000:18:00.0",
    "0000:2a:00.0",
    "0000:3a:00.0",
    "0000:5d:00.0",
    "0000:9a:00.0",
    "0000:ab:00.0",
    "0000:ba:00.0",
    "0000:db:00.0",
)
MODEL = "NVIDIA H100 80GB HBM3"
DRIVER = "565.57.01"
MIB = 1 << 20
EFA_DEVICES = 4
STEP_PHASES = {"data_wait": 0.02, "forward": 0.28, "backward": 0.52, "optimizer": 0.05}
BASE_COLLECTIVE = 0.08
STEPS_BEFORE = 12_000
SAMPLES_PER_STEP = 32
TOKENS_PER_SAMPLE = 4096
BOOT_UPTIME = 3 * 86400.0  # seconds each node has been up when the simulation starts
CPUS = 96

SIMULATION_INFO = MetricSpec(
    "fleetscope_simulation_info",
    "gauge",
    "Value 1: this endpoint is fleetscope simulate, a simulated cluster, not a real node.",
    "fleetscope simulate",
    labels=("scenario",),
)

_COLLECTORS = ("host", "gpu", "nvlink", "xid", "infiniband", "training")
_CPU_RATES = {  # CPU seconds per second by /proc/stat mode, a busy 96-vCPU training node
    "user": 30.0,
    "nice": 0.0,
    "system": 4.0,
    "idle": 61.5,
    "iowait": 0.3,
    "irq": 0.0,
    "softirq": 0.2,
    "steal": 0.0,
}
_EFA_RATES = {  # counter file -> per second per device while the job runs
    "tx_bytes": 6.0e9,
    "rx_bytes": 6.0e9,
    "tx_pkts": 6.0e9 / 8192,
    "rx_pkts": 6.0e9 / 8192,
    "send_bytes": 1.0e9,
    "send_wrs": 1.0e9 / 65536,
    "recv_bytes": 1.0e9,
    "recv_wrs": 1.0e9 / 65536,
    "rdma_read_bytes": 2.5e9,
    "rdma_read_wrs": 2.5e9 / 65536,
    "rdma_read_resp_bytes": 2.5e9,
    "rdma_write_bytes": 2.5e9,
    "rdma_write_wrs": 2.5e9 / 65536,
    "rdma_write_recv_bytes": 2.5e9,
}
_EFA_NOISE = 0.25  # retransmitted packets per second on a healthy device
FALLEN = "GPU has fallen off the bus."
_NVLINK_RATE = 5.0e9  # bytes per second each way on each link while the job runs
# The NVLink probe (exporters/nvlink.py, P2PLatencyProbe) at its defaults: a round every 30 s, five round
# trips per ordered GPU pair. A round trip is two small torch copies and a synchronize timed on the host,
# so it is launch-bound: about 7 us per operator on H100 (the kernel launch overhead PyTorch's
# autoparallel cost model fits on H100s, meta-pytorch/autoparallel pull request 146) for each copy, plus
# the NVLink write itself, 1.8-2.3 us between NVLink peers in the CUDA sample p2pBandwidthLatencyTest
# (its "P2P=Enabled Latency (P2P Writes)" matrix, NVIDIA/cuda-samples issue 230). Round trips are drawn
# from a log-normal law around that 16 us; each pair's median is a few per cent off its peers' (the same
# pair alike on every node: nodes of one model are).
_PROBE_INTERVAL = 30.0
_PROBE_REPEATS = 5
_PROBE_MEDIAN = 16e-6
_PROBE_SIGMA = 0.25


@lru_cache(maxsize=64)
def _probe_samples(count: int) -> tuple[Sample, ...]:
    """The probe histogram's samples, every ordered GPU pair's buckets, count and sum, after ``count``
    round trips per pair. A node's probe has made as many as any other's, unless it stopped, so a
    handful of counts serve the whole cluster: building the 728 samples for every node and read made
    a node's series a quarter to a half dearer."""
    name = nvlink.PROBE_LATENCY.name
    bounds = [*map(repr, nvlink.PROBE_BUCKETS), "+Inf"]
    samples: list[Sample] = []
    for g, peer in itertools.permutations(range(GPUS), 2):
        pair = {"gpu": str(g), "peer": str(peer)}
        median = _PROBE_MEDIAN * (1 + 0.05 * _jitter("probe", g, peer))
        shares = [
            0.5 * (1 + math.erf(math.log(bound / median) / (_PROBE_SIGMA * math.sqrt(2))))
            for bound in nvlink.PROBE_BUCKETS
        ]
        for le, share in zip(bounds, [*shares, 1.0], strict=True):
            samples.append(Sample(f"{name}_bucket", {**pair, "le": le}, float(round(count * share))))
        samples.append(Sample(f"{name}_count", pair, float(count)))
        samples.append(Sample(f"{name}_sum", pair, count * median * math.exp(_PROBE_SIGMA**2 / 2)))
    return tuple(samples)


def _jitter(*keys: object) -> float:
    """A fixed number in [-1, 1] for ``keys``: peers differ a little, the same peer never changes."""
    return zlib.crc32(repr(keys).encode()) / 0xFFFFFFFF * 2 - 1


def _uuid(node: int, gpu: int) -> str:
    """A GPU's UUID in NVIDIA's form, made up (real ones are serials)."""
    return f"GPU-{node + 1:08x}-5151-4d41-8000-{gpu:012x}"


@dataclass(frozen=True)
class _JobState:
    """The job during a stretch of time with one set of faults on."""

    stalled: bool
    step: float  # seconds per step
    slow: dict[int, float]  # rank -> compute factor (stragglers, throttled GPUs)
    extra: dict[int, float]  # rank -> seconds per step outside the timed phases (checkpoint writes)
    collective: float  # the collective's own time per step


class SimulatedCluster:
    """N nodes of 8 GPUs, as their exporters would show them.

    Args:
        nodes: number of nodes.
        faults: faults to inject (:func:`fleetscope.simulate.faults.parse_fault`).
        scenario: a name for ``fleetscope_simulation_info{scenario}``.
        links: NVLinks per GPU (18 on H100 SXM).
        start: Unix time of simulation second 0 (default: now).
        clock: Unix time now (injected by benchmarks that step their own time).

    Raises:
        ValueError: fewer than one node, or a fault on a node the cluster lacks.
    """

    def __init__(
        self,
        nodes: int,
        faults: Sequence[Fault] = (),
        scenario: str = "adhoc",
        links: int = 18,
        start: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if nodes < 1:
            raise ValueError("a simulated cluster needs at least one node")
        for fault in faults:
            if not 0 <= fault.node < nodes:
                raise ValueError(f"{fault.kind}: node {fault.node + 1} is not in this cluster of {nodes}")
        self.nodes = nodes
        self.faults = tuple(faults)
        self.scenario = scenario
        self.links = links
        self.clock = clock
        self.start = clock() if start is None else start
        self.names = [node_name(i) for i in range(nodes)]
        self._by_node: dict[int, list[Fault]] = {}
        for fault in self.faults:
            self._by_node.setdefault(fault.node, []).append(fault)
        self._bounds = sorted({0.0, *(f.at for f in self.faults), *(f.end for f in self.faults)} - {math.inf})
        ranks = nodes * GPUS
        self._compute = [sum(STEP_PHASES.values()) - STEP_PHASES["data_wait"]] * ranks
        for rank in range(ranks):
            self._compute[rank] *= 1 + 0.004 * _jitter("rank", rank)
        self._slowest_base = max(self._compute)
        self._job_state = lru_cache(maxsize=256)(self._job_state_uncached)

    # ------------------------------------------------------------------ time and faults

    def now(self) -> float:
        """Simulation seconds now."""
        return self.clock() - self.start

    def alive(self, node: int, t: float) -> bool:
        """Whether the node's exporter answers at simulation time ``t``."""
        return not any(f.kind == "dead_node" and f.active(t) for f in self._by_node.get(node, ()))

    def layout(self, node: int, t: float) -> tuple[tuple[bool, bool], ...]:
        """What decides which series node ``node`` serves at ``t`` (not their values): for each of its
        faults, whether it has started and whether it is on. Equal layouts, equal series in the same
        order (a lost GPU drops its series; an Xid counter appears once logged; nothing else changes
        them)."""
        return tuple((f.at <= t, f.active(t)) for f in self._by_node.get(node, ()))

    def _on(self, node: int, kind: str, t: float, where: int) -> Fault | None:
        for fault in self._by_node.get(node, ()):
            if fault.kind == kind and fault.active(t) and fault.where == where:
                return fault
        return None

    def _overlap(self, node: int, kind: str, t: float, where: int, link: int = 0) -> float:
        """Seconds in [0, t] that a fault of ``kind`` on this node and place was on."""
        total = 0.0
        for f in self._by_node.get(node, ()):
            if f.kind == kind and f.where == where and f.link == link:
                total += max(0.0, min(t, f.end) - f.at)
        return total

    def _segments(self, t: float) -> Iterator[tuple[float, float, _JobState]]:
        """Stretches of [0, t] with one set of faults on, each with the job's state in it."""
        edges = [b for b in self._bounds if b < t] + [t]
        for a, b in itertools.pairwise(edges):
            if b > a:
                yield a, b, self._state_at((a + b) / 2)

    def _state_at(self, t: float) -> _JobState:
        """The job's state at simulation time ``t``."""
        return self._job_state(frozenset(i for i, f in enumerate(self.faults) if f.active(t)))

    def _job_state_uncached(self, active: frozenset[int]) -> _JobState:
        faults = [self.faults[i] for i in active]
        stalled = any(f.kind in ("xid79", "dataloader_stall", "dead_node") for f in faults)
        slow: dict[int, float] = {}
        extra: dict[int, float] = {}
        collective = BASE_COLLECTIVE
        for f in faults:
            rank = f.node * GPUS + f.where
            if f.kind == "straggler":
                slow[rank] = slow.get(rank, 1.0) * 1.6
            elif f.kind == "thermal":
                slow[rank] = slow.get(rank, 1.0) * 1980 / 1410
            elif f.kind == "slow_checkpoint":
                for local in range(GPUS):
                    extra[f.node * GPUS + local] = extra.get(f.node * GPUS + local, 0.0) + 0.8
            elif f.kind == "efa_retransmit":
                collective += 0.4
        busiest = max(
            [self._slowest_base]
            + [self._compute[r] * factor + extra.get(r, 0.0) for r, factor in slow.items()]
            + [self._compute[r] * slow.get(r, 1.0) + seconds for r, seconds in extra.items()]
        )
        step = STEP_PHASES["data_wait"] + busiest + collective
        return _JobState(stalled, step, slow, extra, collective)

    def _progress(self, t: float) -> tuple[float, list[tuple[int, _JobState]], float, float]:
        """Steps done by simulation time ``t``: (progress, steps per state, busy seconds, last step time)."""
        progress = float(STEPS_BEFORE)
        per_state: list[tuple[int, _JobState]] = []
        busy = 0.0
        last = 0.0
        for a, b, state in self._segments(t):
            if state.stalled:
                continue
            before = progress
            progress += (b - a) / state.step
            done = math.floor(progress) - math.floor(before)
            if done:
                per_state.append((done, state))
                last = a + (math.floor(progress) - before) * state.step
            busy += b - a
        return progress, per_state, busy, last

    # ------------------------------------------------------------------ what a node serves

    def families(self, node: int, t: float) -> list[Metric]:
        """The metric families node ``node`` serves at simulation time ``t`` (what it would serve if it
        answered: :meth:`alive` says whether it does).

        Returns:
            Families in the exporter's order: host, GPU, NVLink, Xid, InfiniBand/EFA, training, the
            scrape's own series, then ``fleetscope_simulation_info``.
        """
        progress, per_state, busy, last = self._progress(t)
        lost = {g for g in range(GPUS) if self._on(node, "xid79", t, g)}
        out: list[Metric] = []
        out += self._host(node, t)
        out += self._gpus(node, t, lost)
        out += self._nvlinks(node, t, lost, busy)
        out += self._xid(node, t)
        out += self._efa(node, t, busy)
        out += self._training(node, progress, per_state, last)
        success, duration = (spec.family() for spec in scrape.SCRAPE_METRICS)
        for name in _COLLECTORS:
            add(duration, [name], round(0.002 + 0.001 * abs(_jitter(node, name)), 6))
            add(success, [name], 1.0)
        out += [duration, success]
        info = SIMULATION_INFO.family()
        add(info, [self.scenario], 1.0)
        out.append(info)
        return out

    def _host(self, node: int, t: float) -> list[Metric]:
        cpu = host.CPU_SECONDS.family()
        iowait = self._overlap(node, "slow_checkpoint", t, 0)
        for mode, rate in _CPU_RATES.items():
            seconds = rate * (BOOT_UPTIME + t)
            if mode == "iowait":
                seconds += 18.0 * iowait
            elif mode == "idle":
                seconds -= 18.0 * iowait
            add(cpu, [mode], round(seconds, 2))
        total, available = host.MEMORY_TOTAL.family(), host.MEMORY_AVAILABLE.family()
        add(total, [], 1_081_999_716 * 1024.0)
        add(available, [], (812_000_000 + 4_000_000 * _jitter(node, "mem")) * 1024.0)
        loads = []
        for spec in host.LOAD:
            family = spec.family()
            add(family, [], round(34.0 + 2 * _jitter(node, spec.name), 2))
            loads.append(family)
        return [cpu, total, available, *loads]

    def _gpus(self, node: int, t: float, lost: set[int]) -> list[Metric]:
        specs = {m.spec.name: m.spec for m in gpu.METRICS}
        families = {name: spec.family() for name, spec in specs.items()}
        info, up, lost_family, timeouts = (
            gpu.INFO.family(),
            gpu.UP.family(),
            gpu.LOST.family(),
            gpu.TIMEOUTS.family(),
        )
        for g in range(GPUS):
            label = str(g)
            add(info, [label, _uuid(node, g), MODEL, DRIVER, BUS_IDS[g]], 1.0)
            add(up, [label], 0.0 if g in lost else 1.0)
            add(lost_family, [label], 1.0 if g in lost else 0.0)
            add(timeouts, [label], 0.0)
            if g in lost:
                continue  # NVML_ERROR_GPU_IS_LOST: the collector leaves every other series out
            for name, value in self._gpu_values(node, g, t).items():
                if isinstance(value, dict):
                    for extra, number in value.items():
                        add(families[name], [label, extra], number)
                else:
                    add(families[name], [label], value)
        return [info, up, lost_family, timeouts, *(f for f in families.values() if f.samples)]

    def _gpu_values(self, node: int, g: int, t: float) -> dict[str, Any]:
        hot = self._on(node, "thermal", t, g) is not None
        rank = node * GPUS + g
        idle = self._on(node, "dataloader_stall", t, g) is not None
        power = 470.0 if hot else 70.0 if idle else 588.39 * (1 + 0.03 * _jitter(rank, "power"))
        energy = 1e3 * 588.39 * (BOOT_UPTIME + t)  # J; cumulative, as NVML's energy counter
        corrected = math.floor(40 * self._overlap(node, "ecc_storm", t, g))
        remapped = math.floor(self._overlap(node, "ecc_storm", t, g) / 60)
        thermal_time = self._overlap(node, "thermal", t, g)
        reasons = {reason: 0.0 for reason in gpu.CLOCK_EVENT_REASONS}
        if hot:
            reasons["hw_thermal_slowdown"] = reasons["sw_thermal_slowdown"] = 1.0
        if idle:
            reasons["gpu_idle"] = 1.0
        return {
            "fleetscope_gpu_temperature_celsius": 89.0 if hot else round(59 + 3 * _jitter(rank, "temp")),
            "fleetscope_gpu_memory_temperature_celsius": 80.0
            if hot
            else round(55 + 2 * _jitter(rank, "hbm")),
            "fleetscope_gpu_power_watts": round(power, 2),
            "fleetscope_gpu_energy_joules_total": round(energy * 1e-3) * 1.0,
            "fleetscope_gpu_utilization_ratio": 0.0 if idle else 1.0,
            "fleetscope_gpu_memory_utilization_ratio": 0.0 if idle else 0.11,
            "fleetscope_gpu_memory_used_bytes": 19818.0 * MIB,
            "fleetscope_gpu_memory_total_bytes": 81559.0 * MIB,
            "fleetscope_gpu_sm_clock_hertz": (1410e6 if hot else 1980e6),
            "fleetscope_gpu_memory_clock_hertz": 2619e6,
            "fleetscope_gpu_clock_event_reason_active": reasons,
            "fleetscope_gpu_ecc_volatile_corrected_errors_total": float(corrected),
            "fleetscope_gpu_ecc_volatile_uncorrected_errors_total": 0.0,
            "fleetscope_gpu_ecc_aggregate_corrected_errors_total": float(corrected),
            "fleetscope_gpu_ecc_aggregate_uncorrected_errors_total": 0.0,
            "fleetscope_gpu_remapped_rows_correctable_total": float(remapped),
            "fleetscope_gpu_remapped_rows_uncorrectable_total": 0.0,
            "fleetscope_gpu_remapped_rows_pending": 0.0,
            "fleetscope_gpu_remapped_rows_failure": 0.0,
            "fleetscope_gpu_pcie_replays_total": 0.0,
            "fleetscope_gpu_pcie_transmit_bytes_per_second": 567000.0,
            "fleetscope_gpu_pcie_receive_bytes_per_second": 559000.0,
            "fleetscope_gpu_recovery_action": 0.0,
            "fleetscope_gpu_power_limit_watts": 700.0,
            "fleetscope_gpu_clock_event_violation_seconds_total": {
                "power": 0.0,
                "thermal": round(thermal_time, 3),
            },
            "fleetscope_gpu_process_memory_used_bytes": {str(4100 + g): 19300.0 * MIB},
            "fleetscope_gpu_mig_mode_enabled": 0.0,
        }

    def _nvlinks(self, node: int, t: float, lost: set[int], busy: float) -> list[Metric]:
        up, speed = nvlink.UP.family(), nvlink.SPEED.family()
        errors = {name: spec.family() for name, spec in nvlink.ERROR_METRICS.items()}
        tx, rx = nvlink.THROUGHPUT["tx"].family(), nvlink.THROUGHPUT["rx"].family()
        fabric, probe, latency = (
            nvlink.FABRIC.family(),
            nvlink.PROBE_UP.family(),
            nvlink.PROBE_LATENCY.family(),
        )
        for g in range(GPUS):
            if g in lost:
                continue
            for link in range(self.links):
                labels = [str(g), str(link)]
                add(up, labels, 1.0)
                add(speed, labels, 2.6562e10)
                storm = self._overlap(node, "nvlink_crc", t, g, link)
                counts = {
                    "fleetscope_nvlink_crc_flit_errors_total": 120 * storm,
                    "fleetscope_nvlink_crc_data_errors_total": 4 * storm,
                    "fleetscope_nvlink_replay_errors_total": 120 * storm,
                    "fleetscope_nvlink_recovery_errors_total": storm / 60,
                    "fleetscope_nvlink_ecc_data_errors_total": 0.0,
                }
                for name, family in errors.items():
                    add(family, labels, float(math.floor(counts[name])))
                moved = (1e12 + _NVLINK_RATE * busy) * (1 + 0.01 * _jitter(node, g, link))
                add(tx, labels, math.floor(moved / 1024) * 1024.0)
                add(rx, labels, math.floor(moved / 1024) * 1024.0)
            add(fabric, [str(g)], 3.0)
        # A lost GPU fails the probe's next copy: the probe stops, its histograms keep what they counted.
        since = STEPS_BEFORE * sum(STEP_PHASES.values())  # the exporter has run about as long as the job
        failed = min(
            (f.at for f in self._by_node.get(node, ()) if f.kind == "xid79" and f.active(t)), default=t
        )
        rounds = math.floor((since + min(t, failed)) / _PROBE_INTERVAL) + 1
        latency.samples.extend(_probe_samples(rounds * _PROBE_REPEATS))  # shared: nothing writes to them
        add(probe, [], 0.0 if lost else 1.0)
        return [up, speed, *errors.values(), tx, rx, fabric, latency, probe]

    def kernel_lines(self, node: int, t: float) -> list[tuple[float, str]]:
        """Kernel-log messages node ``node`` has logged by simulation time ``t``: (time, message)."""
        lines = [
            (-BOOT_UPTIME + 9.2, f"NVRM: loading NVIDIA UNIX x86_64 Kernel Module  {DRIVER}  Tue Oct  8 2024")
        ]
        for f in self._by_node.get(node, ()):
            if f.kind == "xid79" and f.at <= t:
                bus = BUS_IDS[f.where]
                short = bus.rsplit(".", 1)[0]
                lines += [
                    (f.at, f"NVRM: GPU at PCI:{short}: {_uuid(node, f.where)}"),
                    (f.at, "NVRM: GPU Board Serial Number: 1654922000000"),
                    (
                        f.at,
                        f"NVRM: Xid (PCI:{short}): 79, pid='<unknown>', name=<unknown>, {FALLEN}",
                    ),
                    (f.at, f"NVRM: GPU {bus}: {FALLEN}"),
                ]
        return sorted(lines, key=lambda line: line[0])

    def _parsed_kernel_log(self, node: int, t: float) -> tuple[xid.KernelLogParser, list[dict[str, Any]]]:
        parser = xid.KernelLogParser()
        events = []
        for when, message in self.kernel_lines(node, t):
            wall = self.start + when
            record = {
                "MESSAGE": message,
                "__REALTIME_TIMESTAMP": str(int(wall * 1e6)),
                "_SOURCE_MONOTONIC_TIMESTAMP": str(int((BOOT_UPTIME + when) * 1e6)),
            }
            received = dt.datetime.fromtimestamp(wall, dt.UTC).isoformat()
            for event in parser.feed(json.dumps(record).encode()):
                events.append({**event, "source": "journal", "received_at": received})
        return parser, events

    def _xid(self, node: int, t: float) -> list[Metric]:
        parser, _ = self._parsed_kernel_log(node, t)
        index = {bus: str(g) for g, bus in enumerate(BUS_IDS)}
        errors, fallen = xid.XID_ERRORS.family(), xid.FALLEN_OFF_BUS.family()
        for (bus, number), count in sorted(parser.xid_counts.items()):
            add(errors, [index.get(bus, bus), str(number)], float(count))
        for bus, count in sorted(parser.fallen_counts.items()):
            add(fallen, [index.get(bus, bus)], float(count))
        lines, malformed = xid.LINES.family(), xid.MALFORMED.family()
        add(lines, [], float(parser.lines))
        add(malformed, [], float(parser.malformed))
        return [errors, fallen, lines, malformed]

    def events(self, node: int, t: float) -> dict[str, Any]:
        """What the node's ``/events`` answers at simulation time ``t`` (the exporter's JSON shape)."""
        _, events = self._parsed_kernel_log(node, t)
        return {"source": "journal", "error": None, "events": events}

    def _efa(self, node: int, t: float, busy: float) -> list[Metric]:
        families = {file: spec.family() for file, spec in infiniband.EFA_METRICS.items()}
        state, physical, rate = (
            infiniband.STATE.family(),
            infiniband.PHYSICAL_STATE.family(),
            infiniband.RATE.family(),
        )
        for device in range(EFA_DEVICES):
            labels = [f"efa_{device}", "1"]
            add(state, labels, 4.0)
            add(physical, labels, 5.0)
            add(rate, labels, 100 * infiniband.RATE.scale)
            storm = self._overlap(node, "efa_retransmit", t, device)
            noise = _EFA_NOISE * (BOOT_UPTIME + t)
            values = {file: per_second * (BOOT_UPTIME / 4 + busy) for file, per_second in _EFA_RATES.items()}
            values["retrans_pkts"] = noise + 3000 * storm
            values["retrans_bytes"] = 8192 * values["retrans_pkts"]
            values["retrans_timeout_events"] = 2 * storm
            values["impaired_remote_conn_events"] = storm / 20
            for file, family in families.items():
                add(family, labels, float(math.floor(values.get(file, 0.0))))
        return [state, physical, rate, *families.values()]

    def _training(
        self, node: int, progress: float, per_state: list[tuple[int, _JobState]], last: float
    ) -> list[Metric]:
        families = {spec.name: spec.family() for spec in training.METRICS}
        steps = math.floor(progress)
        history = [(STEPS_BEFORE, self._job_state(frozenset())), *per_state]
        base_compute = sum(STEP_PHASES.values()) - STEP_PHASES["data_wait"]
        for local in range(GPUS):
            rank = node * GPUS + local
            label = [str(rank)]
            buckets = [0] * (len(training.STEP_BUCKETS) + 1)
            total = 0.0
            phases = dict.fromkeys(training.PHASES, 0.0)
            for count, state in history:
                compute = self._compute[rank] * state.slow.get(rank, 1.0)
                buckets[bisect.bisect_left(training.STEP_BUCKETS, state.step)] += count
                total += count * state.step
                phases["data_wait"] += count * STEP_PHASES["data_wait"]
                for phase in ("forward", "backward", "optimizer"):
                    phases[phase] += count * compute * STEP_PHASES[phase] / base_compute
                # Synchronous training: every rank's step lasts as long as the slowest rank's; the time a
                # rank does not compute (or write its checkpoint) it waits in the all-reduce.
                busy = STEP_PHASES["data_wait"] + compute + state.extra.get(rank, 0.0)
                phases["collective_wait"] += count * (state.step - busy)
            cumulative = 0
            rows = []
            for bound, count in zip([*training.STEP_BUCKETS, math.inf], buckets, strict=True):
                cumulative += count
                rows.append(("+Inf" if bound == math.inf else repr(float(bound)), float(cumulative)))
            cast(Any, families[training.STEP_DURATION.name]).add_metric(label, rows, round(total, 6))
            for phase in training.PHASES:
                add(families[training.PHASE_SECONDS.name], [*label, phase], round(phases[phase], 6))
            add(families[training.STEPS.name], label, float(steps))
            add(families[training.SAMPLES.name], label, float(steps * SAMPLES_PER_STEP))
            add(families[training.TOKENS.name], label, float(steps * SAMPLES_PER_STEP * TOKENS_PER_SAMPLE))
            add(families[training.LOSS.name], label, round(1.8 + 2.0 / math.sqrt(1 + steps / 100), 5))
            add(families[training.LAST_STEP.name], label, round(self.start + last, 3))
            add(families[training.STEP_NUMBER.name], label, float(steps))
            add(
                families[training.RANK_INFO.name],
                [*label, "sim-4242", str(local), str(self.nodes * GPUS)],
                1.0,
            )
            add(families[training.HOOK_DROPPED.name], label, 0.0)
        add(families[training.REJECTED.name], ["malformed"], 0.0)
        add(families[training.REJECTED.name], ["too_many_ranks"], 0.0)
        return [family for family in families.values() if family.samples]
