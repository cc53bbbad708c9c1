"""What the live collector keeps between windows: facts no single window can show.

One window shows what the cluster does now; some faults are only visible against earlier windows:

- **absence**: an exporter that answered before and does not now (a dead or unreachable node), a GPU
  whose series an exporter served before and serves no more while the exporter still answers and its
  GPU collector succeeded (a GPU the driver no longer enumerates: fallen off the bus, lost);
- **persistent peer deviation**, after Minder (Deng et al., NSDI 2025): nodes of one data-parallel job
  (:class:`~fleetscope.collectors.topology.Topology`) should look alike; each window every GPU (or, for
  a metric read ``per: node``, every node) is scored per metric against its job's peers with a robust
  z-score (median and MAD), metrics in the priority order of ``persistent_deviation.metrics`` in
  ``knowledge/scoring.yaml``, and a member becomes evidence only after it stood apart on the same metric
  for ``persist_windows`` windows in a row; the first metric that names a member is the one reported for
  it (Minder stops at the first). A node metric is a share of a counter's rise in the window (the CPU
  time spent in I/O wait out of all CPU time: :func:`share`);
- **stalled progress**: a rank that took steps in an earlier window and took none in this one; and,
  sooner, a rank whose last step (``fleetscope_training_last_step_timestamp_seconds``, the exporter's
  clock) is older, at the source's own time of the window (the scrape or evaluation time the source
  read it at, :attr:`~fleetscope.collectors.live.NodeSnapshot.time`), than a read's lag and several of
  its steps explain: ``stragglers.stall_lag_share`` of the window plus ``stragglers.stall_steps`` times
  its mean step in the window (a rank that took no step in the window is the stall before).

:meth:`WindowHistory.observe` turns each into series of the window (gauges named
``fleetscope_collector_*``, on the node they are about), so they reach the detectors as samples like any
other and a window written out as a bundle keeps them: ``fleetscope investigate`` on it gives the same
report. The single-bundle engine stays stateless; its own one-snapshot peer rule (error counters far
above every peer's, :mod:`fleetscope.collectors.detectors.peer_deviation`) is kept for bundles, which
have no history.

Memory is bounded: per node a set of GPU indexes and ranks, and per (job, metric, GPU) a counter only
while that GPU stands apart; a GPU or rank missing for ``window_history.forget_after_windows`` windows
is forgotten (a job's stalled ranks all in one window, once one of them passes the limit), and a node
as soon as no source names it any more (a node a source still names stays missing, bounded by the
targets).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily, Metric

from fleetscope.collectors.knowledge import scoring, scoring_list
from fleetscope.collectors.topology import SERIES as TOPOLOGY_SERIES
from fleetscope.collectors.topology import Topology

WINDOW_SECONDS = "fleetscope_collector_window_seconds"
TARGET_DOWN = "fleetscope_collector_target_down_windows"
GPU_MISSING = "fleetscope_collector_gpu_missing_windows"
DEVIATION_WINDOWS = "fleetscope_collector_peer_deviation_windows"
DEVIATION_SCORE = "fleetscope_collector_peer_deviation_score"
STALLED = "fleetscope_collector_training_stalled_windows"
STALLED_SECONDS = "fleetscope_collector_training_stalled_seconds"
STEPS = "fleetscope_training_steps_total"
STEP_SUM = "fleetscope_training_step_duration_seconds_sum"
LAST_STEP = "fleetscope_training_last_step_timestamp_seconds"
COLLECTOR_SUCCESS = "fleetscope_scrape_collector_success"
#: GPU utilisation series and the factor to a 0-1 ratio (dcgm-exporter reports percent).
UTILIZATION = {"fleetscope_gpu_utilization_ratio": 1.0, "DCGM_FI_DEV_GPU_UTIL": 0.01}
RANK_INFO = "fleetscope_training_rank_info"
#: Factor that makes the MAD of normal data equal its standard deviation (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class PeerMetric:
    """One metric of the priority list (``persistent_deviation.metrics``).

    Attributes:
        name: The series name.
        side: ``high``, ``low`` or ``both``: which deviation is a fault.
        layer: The layer a GPU that stands apart on it points at, or None.
        jobs_only: compared only among the GPUs of one job, never across a cluster without job records
            (utilisation: GPUs without work are idle by design).
        per: ``gpu`` (each GPU's sample) or ``node`` (the node's :func:`share`, ``share`` below).
        share: For a node metric, ``(label, value)`` (``share: [mode, iowait]`` in the file): the share of
            the counter's rise in the window that its samples with that label value make.
        spread_floor: The least spread the robust z-score divides by, in the metric's unit (a share
            whose healthy value is near 0 would otherwise make a tiny difference look large).
    """

    name: str
    side: str
    layer: str | None
    jobs_only: bool = False
    per: str = "gpu"
    share: tuple[str, str] | None = None
    spread_floor: float = 0.0


def peer_metrics() -> list[PeerMetric]:
    """The metrics peers are compared on, most indicative first (``knowledge/scoring.yaml``)."""
    return [
        PeerMetric(
            str(m["name"]),
            str(m["side"]),
            m.get("layer"),
            bool(m.get("jobs_only", False)),
            str(m.get("per", "gpu")),
            (str(m["share"][0]), str(m["share"][1])) if m.get("share") else None,
            float(m.get("spread_floor", 0.0)),
        )
        for m in scoring_list("persistent_deviation.metrics")
    ]


def share(samples: Iterable[tuple[Mapping[str, str], float]], label: str, value: str) -> float | None:
    """The share of a counter's rise that its samples with ``label`` = ``value`` make, 0-1.

    Args:
        samples: ``(labels, value)`` of one node's samples of one counter in the window (increases; a
            series that did not rise is absent, which counts as 0): ``fleetscope_host_cpu_seconds_total
            {mode}``, or node_exporter's ``node_cpu_seconds_total{cpu,mode}`` (summed over CPUs).

    Returns:
        The share, or None where nothing rose (a baseline window) or a value is not a number.
    """
    total = part = 0.0
    for labels, amount in samples:
        total += amount
        if labels.get(label) == value:
            part += amount
    return part / total if total > 0 and math.isfinite(total) else None


def robust_scores(values: Sequence[float], floor: float = 0.0) -> list[float]:
    """How far each value is from the median of ``values`` in robust standard deviations (in order).

    The spread is ``1.4826 * MAD`` (median absolute deviation), floored at
    ``persistent_deviation.relative_floor`` of the median's size so that peers that agree almost exactly
    do not make a small difference look large, and at ``floor`` (in the values' unit); where all are 0, a
    value at the median scores 0 and any other value infinitely far. One median and one MAD for all:
    linear in the values but for the sorts.
    """
    if not values:
        return []
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    spread = max(MAD_TO_SIGMA * mad, scoring("persistent_deviation.relative_floor") * abs(median), floor)
    if spread == 0:
        return [0.0 if v == median else math.copysign(math.inf, v - median) for v in values]
    return [(v - median) / spread for v in values]


def _gauge(name: str, doc: str, labels: dict[str, str], value: float) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


class WindowHistory:
    """State kept across windows, turned into series of each window (module docstring).

    Args:
        window: How long a window is; given to the detectors as ``fleetscope_collector_window_seconds``
            so that counter increases can be read as rates.

    Attributes:
        topology: The cluster's map as the last window observed states it (its ``_info`` series), which
            the engine is handed with that window (:func:`~fleetscope.collectors.investigate.
            investigate_window`'s ``topology``) rather than build it again.
    """

    def __init__(self, window: timedelta = timedelta(minutes=5)) -> None:
        self.window = window.total_seconds()
        self.topology = Topology()
        self._answered: set[str] = set()
        self._down: dict[str, int] = {}
        self._gpus: dict[str, set[str]] = {}
        self._missing: dict[str, dict[str, int]] = {}
        self._apart: dict[tuple[str, str, str, str], int] = {}
        self._stepping: dict[str, dict[str, int]] = {}

    def observe(
        self,
        nodes: Mapping[str, Sequence[Metric]],
        down: Collection[str],
        times: Mapping[str, float] | None = None,
    ) -> dict[str, list[Metric]]:
        """Take one window in; return the series it adds, per node.

        Args:
            nodes: The families each node that answered showed in this window (counters as increases).
            down: Nodes a source should have read and could not.
            times: Per node, the source's own time of its samples (Unix seconds: the scrape or evaluation
                time); a node without one has its stalls found by whole windows only.

        Returns:
            ``{node: [gauge families]}``: ``fleetscope_collector_window_seconds`` for every node that
            answered, and the absence, peer-deviation and stall series of the module docstring.
        """
        forget = scoring("window_history.forget_after_windows")
        out: dict[str, list[Metric]] = {node: [] for node in nodes}
        for node in nodes:
            out[node].append(
                _gauge(WINDOW_SECONDS, "Length of the window the counters rose in.", {}, self.window)
            )
        # Absence of whole nodes: a node a source could not read after it answered before. A node no source
        # reads or names any more was retired (taken out of the targets): forgotten, not missing.
        for node in (self._answered | set(self._down)) - set(nodes) - set(down):
            self._forget(node)
        for node in sorted(set(down) - set(nodes)):
            if node not in self._answered and node not in self._down:
                continue  # never seen answering: a target that is not up yet, not a loss
            # No forgetting here: while a source names the node it is still missing (a dead node stays
            # an incident until it answers or leaves the targets, which bound this memory).
            count = self._down.get(node, 0) + 1
            self._down[node] = count
            out.setdefault(node, []).append(
                _gauge(TARGET_DOWN, "Windows in a row the node's exporter has not answered.", {}, count)
            )
        for node in nodes:
            self._down.pop(node, None)
        self._answered = (self._answered | set(nodes)) - set(self._down)
        metrics = peer_metrics()
        used = {
            COLLECTOR_SUCCESS,
            RANK_INFO,
            STEPS,
            STEP_SUM,
            LAST_STEP,
            *UTILIZATION,
            *(m.name for m in metrics),
            *TOPOLOGY_SERIES,
        }
        holds: dict[str, bool] = {}
        windows = {node: _Window.read(families, used, holds) for node, families in nodes.items()}
        self.topology = Topology.from_samples(
            (node, name, labels, value)
            for node, window in windows.items()
            for name in TOPOLOGY_SERIES
            for labels, value in window.series.get(name, ())
        )
        self._gpu_absence(windows, out, forget)
        self._stalls(windows, out, forget, times or {})
        self._deviations(windows, out, metrics)
        return {node: families for node, families in out.items() if families}

    def _forget(self, node: str) -> None:
        self._down.pop(node, None)
        self._answered.discard(node)
        self._gpus.pop(node, None)
        self._missing.pop(node, None)
        self._stepping.pop(node, None)

    def _gpu_absence(self, windows: dict[str, _Window], out: dict[str, list[Metric]], forget: float) -> None:
        for node, window in windows.items():
            if any(
                labels.get("collector") == "gpu" and value == 0
                for labels, value in window.series.get(COLLECTOR_SUCCESS, ())
            ):
                continue  # the exporter's GPU collector failed (NVML down): its GPUs say nothing this time
            now = window.gpus
            known = self._gpus.setdefault(node, set())
            missing = self._missing.setdefault(node, {})
            for gpu in sorted(known - now, key=int):
                count = missing.get(gpu, 0) + 1
                if count > forget:
                    known.discard(gpu)
                    missing.pop(gpu, None)
                    continue
                missing[gpu] = count
                out[node].append(
                    _gauge(
                        GPU_MISSING,
                        "Windows in a row the exporter, still answering, has served no series of the GPU.",
                        {"gpu": gpu},
                        count,
                    )
                )
            for gpu in now:
                missing.pop(gpu, None)
            known |= now

    def _stalls(
        self,
        windows: dict[str, _Window],
        out: dict[str, list[Metric]],
        forget: float,
        times: Mapping[str, float],
    ) -> None:
        lag = scoring("stragglers.stall_lag_share") * self.window
        many = scoring("stragglers.stall_steps")
        stalled: list[tuple[str, str, str]] = []  # (job, node, rank) of the ranks without a step
        for node, window in windows.items():
            jobs = {
                labels["rank"]: labels.get("job_id", "")
                for labels, _ in window.series.get(RANK_INFO, ())
                if "rank" in labels
            }
            stepped = {labels.get("rank", "") for labels, value in window.series.get(STEPS, ()) if value > 0}
            stepping = self._stepping.setdefault(node, {})
            for rank in sorted(jobs):
                if rank in stepped:
                    stepping[rank] = 0
                elif rank in stepping:
                    stepping[rank] += 1
                    stalled.append((jobs[rank], node, rank))
            for rank in set(stepping) - set(jobs):
                del stepping[rank]  # the rank left the node (job ended): not a stall
            now = times.get(node)
            if now is None:
                continue
            # A rank's pace: its mean step in the window. One that took no step in it has no pace here and
            # needs none: the whole window without a step is the stall above.
            steps = {labels.get("rank", ""): value for labels, value in window.series.get(STEPS, ())}
            pace = {
                labels.get("rank", ""): took / steps[labels.get("rank", "")]
                for labels, took in window.series.get(STEP_SUM, ())
                if steps.get(labels.get("rank", ""), 0) > 0 and took > 0 and math.isfinite(took)
            }
            for labels, last in window.series.get(LAST_STEP, ()):
                rank = labels.get("rank", "")
                if rank not in stepping or rank not in pace:
                    continue
                age = now - last
                if age > lag + many * pace[rank]:
                    out[node].append(
                        _gauge(
                            STALLED_SECONDS,
                            "Seconds since the rank's last step, at the source's time of the window, where "
                            "that is longer than a read's lag and several of its steps explain.",
                            {"rank": rank},
                            age,
                        )
                    )
        # A job stops as a whole, so its stalled ranks are forgotten together: ranks forgotten a window
        # before the others (their windows began a moment apart) would leave those looking like a stall of
        # another shape, a hang of the ranks left, where the rank that starved them is gone.
        done = {job for job, node, rank in stalled if self._stepping[node][rank] > forget}
        for job, node, rank in stalled:
            if job in done:
                del self._stepping[node][rank]
                continue
            out[node].append(
                _gauge(
                    STALLED,
                    "Windows in a row a rank that took steps before has taken none.",
                    {"rank": rank},
                    self._stepping[node][rank],
                )
            )

    def _deviations(
        self, windows: dict[str, _Window], out: dict[str, list[Metric]], metrics: list[PeerMetric]
    ) -> None:
        topology = self.topology
        persist = scoring("persistent_deviation.persist_windows")
        threshold = scoring("persistent_deviation.z")
        min_peers = scoring("persistent_deviation.min_peers")
        min_utilization = scoring("persistent_deviation.min_utilization")
        apart: dict[tuple[str, str, str, str], int] = {}
        idle = {
            (node, labels.get("gpu", ""))
            for node, window in windows.items()
            for name, factor in UTILIZATION.items()
            for labels, value in window.series.get(name, ())
            if value * factor < min_utilization
        }
        held: dict[str, set[tuple[str, str]]] = {}
        for (node, index), jobs in topology.gpu_jobs.items():
            for job in jobs:
                held.setdefault(job, set()).add((node, str(index)))
        for rank in topology.ranks.values():
            if rank.job and rank.gpu is not None:
                held.setdefault(rank.job, set()).add((rank.node, str(rank.gpu)))
        for job, members in topology.groups(sorted(windows)).items():
            named: set[tuple[str, str]] = set()
            ours = held.get(job, set())
            for metric in metrics:
                if metric.jobs_only and not job:
                    continue
                values = (
                    _node_values(metric, members, windows)
                    if metric.per == "node"
                    else {
                        (node, labels["gpu"]): value
                        for node in members
                        for labels, value in windows[node].series.get(metric.name, ())
                        if labels.get("gpu", "").isdigit()
                        and math.isfinite(value)
                        and (not job or (node, labels["gpu"]) in ours)
                        and (metric.jobs_only or (node, labels["gpu"]) not in idle)
                    }
                )
                if len(values) < min_peers:
                    continue
                scores = robust_scores(list(values.values()), metric.spread_floor)
                for ((node, gpu), _value), z in zip(values.items(), scores, strict=True):
                    if not _beyond(z, metric.side, threshold) or (node, gpu) in named:
                        continue
                    key = (job, metric.name, node, gpu)
                    count = self._apart.get(key, 0) + 1
                    apart[key] = count
                    if count < persist:
                        continue
                    named.add((node, gpu))
                    labels = (
                        {"gpu": gpu, "job": job, "metric": metric.name}
                        if gpu
                        else {
                            "job": job,
                            "metric": metric.name,
                        }
                    )
                    member = "GPU" if gpu else "node"
                    out[node] += [
                        _gauge(
                            DEVIATION_WINDOWS,
                            f"Windows in a row the {member}'s metric stood apart from its job's peers.",
                            labels,
                            count,
                        ),
                        _gauge(
                            DEVIATION_SCORE,
                            f"Robust z-score of the {member}'s metric against its job's peers in the window.",
                            labels,
                            z,
                        ),
                    ]
        self._apart = apart  # only members apart in this window keep a count: bounded by the fleet


def _node_values(
    metric: PeerMetric, members: Sequence[str], windows: Mapping[str, _Window]
) -> dict[tuple[str, str], float]:
    """A node metric's value per member node, keyed ``(node, "")`` (no GPU): its :func:`share`."""
    if metric.share is None:
        return {}
    label, wanted = metric.share
    values = {}
    for node in members:
        value = share(windows[node].series.get(metric.name, ()), label, wanted)
        if value is not None:
            values[(node, "")] = value
    return values


def _beyond(z: float, side: str, threshold: float) -> bool:
    if side == "high":
        return z >= threshold
    if side == "low":
        return z <= -threshold
    return abs(z) >= threshold


@dataclass(slots=True)
class _Window:
    """What the history reads of one node's window.

    Attributes:
        gpus: The GPU indexes any of its series names (a ``gpu`` label of digits).
        series: ``name -> [(labels, value)]`` of the samples of the series the history uses, in order.
    """

    gpus: set[str]
    series: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def read(cls, families: Sequence[Metric], used: set[str], holds: dict[str, bool]) -> _Window:
        """Index one node's families: every sample once for its ``gpu`` label, and only the families
        that may hold a ``used`` name (a used name starts with the family's; ``holds`` caches the answer
        per family name) sample by sample."""
        gpus = {s.labels.get("gpu", "") for family in families for s in family.samples}
        series: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in families:
            samples = family.samples
            held = holds.get(family.name)
            if held is None:
                held = holds[family.name] = any(name.startswith(family.name) for name in used)
            if held:
                for s in samples:
                    if s.name in used:
                        found = series.get(s.name)
                        if found is None:
                            found = series[s.name] = []
                        found.append((s.labels, s.value))
        return cls({gpu for gpu in gpus if gpu.isdigit()}, series)
