"""What the console shows of a live cluster: per-GPU, per-link and per-rank tables read from the live sources.

The console reads the cluster through the collector's own sources (:mod:`fleetscope.collectors.live`:
:class:`~fleetscope.collectors.live.ExporterSource`, :class:`~fleetscope.collectors.live.FileSDSource`,
:class:`~fleetscope.collectors.live.PromQLSource`), so it sees exactly the windows the collector
judges: gauges at their latest value, counters as their increase over the window. A :class:`Sampler`
fetches at most once per refresh period and keeps the last samples, which are the console's series
over time (a node's GPU temperatures, a job's step times since the console started watching).

Every table is a :class:`pandas.DataFrame` with one row per GPU, link family or rank, so the pages can
aggregate before they chart (a 2,048-node cluster is 16,384 GPU rows; a chart gets far fewer marks).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from fleetscope.collectors.live import (
    ExporterSource,
    FileSDSource,
    NodeSnapshot,
    PromQLSource,
    Source,
    SourceError,
    target_nodes,
)

#: Clock-event reasons that mean the GPU is held below the clocks it asked for by a limit (power,
#: thermal, an external slowdown signal), as opposed to idling or an application's own clock setting.
#: Names as the exporter labels them (``fleetscope_gpu_clock_event_reason_active{reason}``, from
#: nvml.h's ``nvmlClocksEventReason*`` bits).
THROTTLE_REASONS = (
    "sw_power_cap",
    "hw_slowdown",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
)

#: Interconnect error counters, by fabric: NVLink (``nvmlDeviceGetNvLinkErrorCounter``), InfiniBand
#: (the port ``counters/`` files of ``/sys/class/infiniband``) and EFA (the device's ``hw_counters``).
LINK_ERROR_COUNTERS = {
    "nvlink": (
        "fleetscope_nvlink_replay_errors_total",
        "fleetscope_nvlink_recovery_errors_total",
        "fleetscope_nvlink_crc_flit_errors_total",
        "fleetscope_nvlink_crc_data_errors_total",
        "fleetscope_nvlink_ecc_data_errors_total",
    ),
    "infiniband": (
        "fleetscope_infiniband_symbol_errors_total",
        "fleetscope_infiniband_link_downed_total",
        "fleetscope_infiniband_link_error_recovery_total",
        "fleetscope_infiniband_local_link_integrity_errors_total",
        "fleetscope_infiniband_excessive_buffer_overrun_errors_total",
        "fleetscope_infiniband_port_receive_errors_total",
        "fleetscope_infiniband_port_receive_remote_physical_errors_total",
        "fleetscope_infiniband_port_transmit_discards_total",
    ),
    "efa": (
        "fleetscope_efa_retransmitted_packets_total",
        "fleetscope_efa_rdma_read_work_request_errors_total",
        "fleetscope_efa_rdma_write_work_request_errors_total",
        "fleetscope_efa_unresponsive_remote_events_total",
        "fleetscope_efa_impaired_remote_connection_events_total",
        "fleetscope_efa_retransmit_timeout_events_total",
    ),
}
_FABRIC_OF = {name: fabric for fabric, names in LINK_ERROR_COUNTERS.items() for name in names}

#: GPU columns the cluster heatmap can colour by, with what the user reads.
GPU_MEASURES = {
    "health": "health (0 ok, 1 needs action, 2 down or lost)",
    "temperature_celsius": "temperature (°C)",
    "xid_errors": "Xid errors in the window",
    "ecc_errors": "uncorrectable ECC in the window (remapped rows + retired pages)",
    "throttled": "throttled (1: a power or thermal limit holds the clocks)",
}

_GPU_COLUMNS = ["node", "gpu", *GPU_MEASURES, "status", "throttle_reasons"]
_LINK_COLUMNS = ["node", "fabric", "errors", "errors_per_second"]
_RANK_COLUMNS = [
    "node",
    "rank",
    "job_id",
    "steps",
    "step_seconds",
    "collective_wait_seconds",
]

_WANTED = (
    "fleetscope_gpu_temperature_celsius",
    "fleetscope_gpu_up",
    "fleetscope_gpu_lost",
    "fleetscope_gpu_fallen_off_bus_total",
    "fleetscope_gpu_recovery_action",
    "fleetscope_gpu_xid_errors_total",
    "fleetscope_gpu_remapped_rows_uncorrectable_total",
    "fleetscope_gpu_retired_pages_total",
    "fleetscope_gpu_clock_event_reason_active",
    "fleetscope_training_",
    *_FABRIC_OF,
)


@dataclass
class ClusterState:
    """One look at the cluster.

    Attributes:
        time: when it was read (UTC).
        window_seconds: the window counters were measured over.
        gpus: one row per (node, gpu): ``temperature_celsius``, ``health`` (0 ok, 1 the driver asks for
            a reset, reboot or drain, 2 NVML lost it or did not answer), ``xid_errors`` and
            ``ecc_errors`` (counts in the window), ``throttled`` (0/1), ``status`` (words) and
            ``throttle_reasons``.
        links: one row per (node, fabric): ``errors`` in the window and ``errors_per_second``.
        ranks: one row per training rank: ``step_seconds`` (mean step time in the window; None when
            it took no step there, as on the first look, which is the window's baseline),
            ``collective_wait_seconds`` (per step, in the window), ``steps`` (in the window), ``job_id``.
        down: node (or exporter address) -> why it could not be read.
    """

    time: datetime
    window_seconds: float
    gpus: pd.DataFrame
    links: pd.DataFrame
    ranks: pd.DataFrame
    down: dict[str, str] = field(default_factory=dict)

    @property
    def nodes(self) -> list[str]:
        """Every node this look read or found down, sorted."""
        return sorted(
            set(self.gpus["node"]) | set(self.links["node"]) | set(self.ranks["node"]) | set(self.down)
        )


def _index(text: str) -> int | str:
    return int(text) if text.isdigit() else text


@dataclass
class _Gpu:
    """What one window says of one GPU."""

    temperature_celsius: float | None = None
    up: float = 1.0
    lost: float = 0.0
    recovery_action: float = 0.0
    xid_errors: float = 0.0
    ecc_errors: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def read(self, name: str, labels: dict[str, str], value: float) -> None:
        if name == "fleetscope_gpu_temperature_celsius":
            self.temperature_celsius = value
        elif name == "fleetscope_gpu_up":
            self.up = value
        elif name in ("fleetscope_gpu_lost", "fleetscope_gpu_fallen_off_bus_total"):
            self.lost = max(self.lost, value)
        elif name == "fleetscope_gpu_recovery_action":
            self.recovery_action = value
        elif name == "fleetscope_gpu_xid_errors_total":
            self.xid_errors += value
        elif name in (
            "fleetscope_gpu_remapped_rows_uncorrectable_total",
            "fleetscope_gpu_retired_pages_total",
        ):
            self.ecc_errors += value
        elif (
            name == "fleetscope_gpu_clock_event_reason_active"
            and value
            and labels.get("reason") in THROTTLE_REASONS
        ):
            self.reasons.append(labels["reason"])

    def columns(self) -> dict[str, object]:
        if self.lost:
            health, status = 2, "lost (fallen off the bus)"
        elif not self.up:
            health, status = 2, "NVML did not answer"
        elif self.recovery_action:
            health, status = 1, f"the driver asks for recovery action {int(self.recovery_action)}"
        else:
            health, status = 0, "ok"
        return {
            "temperature_celsius": self.temperature_celsius,
            "health": health,
            "xid_errors": self.xid_errors,
            "ecc_errors": self.ecc_errors,
            "throttled": int(bool(self.reasons)),
            "status": status,
            "throttle_reasons": ", ".join(sorted(self.reasons)),
        }


@dataclass
class _Rank:
    """What one window says of one training rank."""

    job_id: str = ""
    steps: float = 0.0
    collective_wait: float = 0.0
    step_duration_sum: float | None = None
    step_duration_count: float | None = None

    def read(self, name: str, labels: dict[str, str], value: float) -> None:
        if name == "fleetscope_training_step_duration_seconds_sum":
            self.step_duration_sum = value
        elif name == "fleetscope_training_step_duration_seconds_count":
            self.step_duration_count = value
        elif name == "fleetscope_training_steps_total":
            self.steps = value
        elif name == "fleetscope_training_phase_seconds_total" and labels.get("phase") == "collective_wait":
            self.collective_wait = value
        elif name == "fleetscope_training_rank_info":
            self.job_id = labels.get("job_id", "")

    def columns(self) -> dict[str, object]:
        # The window holds the histogram's _sum and _count as their rises over it.
        total, count = self.step_duration_sum, self.step_duration_count
        return {
            "job_id": self.job_id,
            "steps": self.steps,
            "step_seconds": total / count if total is not None and count else None,
            "collective_wait_seconds": self.collective_wait / self.steps if self.steps else None,
        }


def read_state(
    snapshots: dict[str, NodeSnapshot],
    window_seconds: float,
    down: dict[str, str] | None = None,
    now: datetime | None = None,
) -> ClusterState:
    """Turn the windows of a source's ``fetch()`` into a :class:`ClusterState`.

    Args:
        snapshots: node -> its window (metric families, counters as increases over the window).
        window_seconds: the window's length, to turn counts into rates.
        down: node or address -> why it could not be read.
        now: the time of this look (default: now).
    """
    gpus: dict[tuple[str, str], _Gpu] = {}
    links: dict[tuple[str, str], float] = {}
    ranks: dict[tuple[str, str], _Rank] = {}
    for node, snapshot in snapshots.items():
        for family in snapshot.families:
            for sample in family.samples:
                if not sample.name.startswith(_WANTED):
                    continue
                name, labels, value = sample.name, sample.labels, float(sample.value)
                if name in _FABRIC_OF:
                    key = (node, _FABRIC_OF[name])
                    links[key] = links.get(key, 0.0) + value
                elif name.startswith("fleetscope_training_") and "rank" in labels:
                    ranks.setdefault((node, labels["rank"]), _Rank()).read(name, labels, value)
                elif name.startswith("fleetscope_gpu_") and "gpu" in labels:
                    gpus.setdefault((node, labels["gpu"]), _Gpu()).read(name, labels, value)
    gpu_rows = [{"node": node, "gpu": _index(gpu), **row.columns()} for (node, gpu), row in gpus.items()]
    rank_rows = [{"node": node, "rank": _index(rank), **row.columns()} for (node, rank), row in ranks.items()]
    return ClusterState(
        time=now or datetime.now(UTC),
        window_seconds=window_seconds,
        gpus=pd.DataFrame(gpu_rows, columns=_GPU_COLUMNS),
        links=pd.DataFrame(
            [
                {
                    "node": node,
                    "fabric": fabric,
                    "errors": errors,
                    "errors_per_second": errors / window_seconds,
                }
                for (node, fabric), errors in links.items()
            ],
            columns=_LINK_COLUMNS,
        ),
        ranks=pd.DataFrame(rank_rows, columns=_RANK_COLUMNS),
        down=dict(down or {}),
    )


def open_source(
    targets: Sequence[str], targets_file: Path | None, prometheus_url: str | None, window: timedelta
) -> Source | None:
    """The live source the console settings name (the first of targets, targets file, Prometheus URL), or
    None when none is set.

    Raises:
        ValueError: a target or the URL is not an HTTP address (the source's own check).
    """
    if targets:
        return ExporterSource(list(targets), window=window, timeout=5.0)
    if targets_file is not None:
        return FileSDSource(targets_file, window=window, timeout=5.0)
    if prometheus_url:
        return PromQLSource(prometheus_url, window=window, timeout=10.0)
    return None


def _down(source: Source, error: str | None) -> dict[str, str]:
    """Name the nodes a source could not read, by node where it knows them, else by what it said. A
    Prometheus API reads whole or not at all, so its down nodes are those it counts down itself: the
    targets Prometheus cannot scrape (``up`` 0) or whose series stopped in the window."""
    lines = [error] if error else list(source.skipped)
    nodes: dict[str, str] = {}  # base URL -> node
    if isinstance(source, ExporterSource):
        nodes = source.nodes
    elif isinstance(source, FileSDSource):
        # The file's node labels, read again as the source read them (a file it could not read names none).
        with contextlib.suppress(SourceError, ValueError):
            nodes = target_nodes(source.targets())
    down: dict[str, str] = {}
    for line in lines:
        # A source that read nothing raises one error naming every target it tried.
        named = [node for base, node in nodes.items() if base + "/" in line] or [line.split(": ", 1)[0]]
        down.update(dict.fromkeys(named, line))
    if isinstance(source, PromQLSource):
        why = f"{source.url}: its scrape fails (up is 0), or its series stopped within the window"
        down.update(dict.fromkeys((node for node in source.down if node not in down), why))
    return down


def look(source: Source, window_seconds: float) -> ClusterState:
    """Read a source once into a :class:`ClusterState`; a source that cannot be read at all gives a look
    with no rows and every node it knows down.

    Raises:
        ValueError: a window is not Prometheus text.
    """
    try:
        snapshots, error = source.fetch(), None
    except SourceError as exc:
        snapshots, error = {}, str(exc)
    return read_state(snapshots, window_seconds, _down(source, error))


#: The source of a reader process (:meth:`Sampler.in_process_of_its_own`).
_WORKER_SOURCE: Source | None = None


def _open_in_worker(
    targets: tuple[str, ...], targets_file: Path | None, prometheus_url: str | None, window_seconds: float
) -> None:
    global _WORKER_SOURCE
    _WORKER_SOURCE = open_source(targets, targets_file, prometheus_url, timedelta(seconds=window_seconds))


def _look_in_worker(window_seconds: float) -> ClusterState:
    assert _WORKER_SOURCE is not None, "the reader process was not initialised"
    return look(_WORKER_SOURCE, window_seconds)


class Sampler:
    """Keeps the last ``keep`` looks at a source, reading it again once the latest is older than
    ``refresh_seconds``.

    Only the first look is read while a page waits. After that a stale look starts a read from a
    background thread (the console's reads then run in a process of their own) and pages go on with the
    latest look until the new one is in, so a large cluster's read (20-30 s at 2,048 nodes, see
    ``benchmarks/README.md``) never holds a page up.
    Thread-safe: Streamlit runs each browser session's script in its own thread and the console shares
    one sampler between them.

    Args:
        read: makes one look, raising ValueError on a window that is not Prometheus text: :func:`look`
            on a source in a process of its own (:meth:`in_process_of_its_own`, the console's), or in
            this one.
        window_seconds: the source's window (for rates).
        refresh_seconds: how old the latest look may be before a new read starts.
        keep: how many looks to keep (the length of the console's series).
        clock: monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        read: Callable[[], ClusterState],
        window_seconds: float,
        refresh_seconds: float = 15.0,
        keep: int = 120,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.window_seconds = window_seconds
        self.refresh_seconds = refresh_seconds
        self.history: deque[ClusterState] = deque(maxlen=keep)
        self.clock = clock
        self.error: str | None = None
        self._read_at: float | None = None
        self._lock = threading.Lock()  # guards the fields above
        self._reading = threading.Lock()  # held while a read runs: one at a time

    @classmethod
    def in_process_of_its_own(
        cls,
        targets: Sequence[str],
        targets_file: Path | None,
        prometheus_url: str | None,
        window_seconds: float,
        **options: Any,
    ) -> Sampler | None:
        """A sampler whose reads run in a child process that owns the source (the console's): a read of
        thousands of nodes parses hundreds of thousands of series, and in this process it would hold
        the interpreter the pages render in. None when no source is named.

        Raises:
            ValueError: a target or the URL is not an HTTP address (checked here, before the child starts).
        """
        if open_source(targets, targets_file, prometheus_url, timedelta(seconds=window_seconds)) is None:
            return None
        reader = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded server
            initializer=_open_in_worker,
            initargs=(tuple(targets), targets_file, prometheus_url, window_seconds),
        )

        def read() -> ClusterState:
            return reader.submit(_look_in_worker, window_seconds).result()

        return cls(read, window_seconds, **options)

    def _read(self) -> None:
        """Make one look and keep it (or the error that stopped it)."""
        try:
            state = self.read()
        except ValueError as exc:
            with self._lock:
                self.error = f"the live source answered with something that is not Prometheus text: {exc}"
            return
        finally:
            with self._lock:
                self._read_at = self.clock()
        with self._lock:
            self.history.append(state)
            self.error = None

    def _read_in_background(self) -> None:
        try:
            self._read()
        finally:
            self._reading.release()

    def latest(self) -> ClusterState | None:
        """The latest look; the first call reads the source and waits for it, later calls start a
        background read when the look is stale and return at once.

        Returns:
            The look, or None when no read has succeeded (:attr:`error` says why). A source that cannot
            be read at all gives a look with no rows and every node it knows down.
        """
        with self._lock:
            have = bool(self.history)
            stale = self._read_at is None or self.clock() - self._read_at >= self.refresh_seconds
        if not have:
            with self._reading:  # waits for a read in flight, such as another session's first one
                with self._lock:
                    have = bool(self.history)
                if not have:
                    self._read()
        elif stale and self._reading.acquire(blocking=False):
            threading.Thread(
                target=self._read_in_background, name="fleetscope-console-read", daemon=True
            ).start()
        with self._lock:
            return self.history[-1] if self.history else None

    def series(self, table: str) -> pd.DataFrame:
        """One table (``gpus``, ``links`` or ``ranks``) of every kept look, with a ``time`` column."""
        with self._lock:
            frames = [getattr(state, table).assign(time=state.time) for state in self.history]
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)
