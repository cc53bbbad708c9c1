"""A node whose storage holds its job up: its CPUs wait on I/O far more than its peers', window after window.

**I/O wait.** ``iowait`` in ``/proc/stat`` is time a CPU was idle while a task that last ran on it had
disk or network-file-system I/O outstanding (proc(5); the kernel's own caveat: the CPU is not waiting,
the task is, so the figure is a lower bound and noisy on a healthy node). fleetscope's exporter serves it
summed over CPUs as ``fleetscope_host_cpu_seconds_total{mode="iowait"}`` (``exporters/host.py``),
node_exporter per CPU as ``node_cpu_seconds_total{cpu,mode="iowait"}``. In a live window both are
increases, and a node's share of CPU time in iowait is its iowait rise over its rise in every mode. The
live collector's history (:mod:`fleetscope.collectors.history`) scores that share against the other
nodes of the job with the robust z-score of the peer-deviation rule (median and MAD, the
``per: node`` entries of ``persistent_deviation.metrics`` in ``knowledge/scoring.yaml``, with their
spread floor) and states a node that stood above its peers for ``persist_windows`` windows in a row as
``fleetscope_collector_peer_deviation_windows{job,metric}`` and ``..._score`` on that node. Nodes of a
job that all write a checkpoint at once all wait together: none stands apart, and nothing is found.

**Its ranks held up.** The training hook (``exporters/training.py``) times a step from its start to its
end and, within it, the phases ``forward``, ``backward`` and ``optimizer`` the loop wraps and the
``collective_wait`` of the communication hook; ``data_wait`` is the time since the previous step ended,
so a checkpoint saved between steps lands there, and one saved inside the step block lands in no phase.
A rank's time per step outside compute and collectives is therefore the step's duration
(``fleetscope_training_step_duration_seconds_sum``) less those four phases
(``fleetscope_training_phase_seconds_total{phase}``), over its steps (``fleetscope_training_steps_total``).
Where a rank of the node spends at least ``slow_storage.min_step_share`` of the job's median step more
there than the job's median rank, the two signals agree: the finding is a ``likely`` cause. Without it (no
training hook, or the job took no steps) the node's I/O wait alone is an ``unsure`` one.

**Persistence.** One signal alone counts only once it has persisted: the I/O wait apart for
``persist_windows`` windows in a row, as the history states it. Two that agree count in the window they
agree in: the node's I/O-wait share in this window stands apart from its job's peers by the same rule
(robust z at least ``persistent_deviation.z`` over the metric's spread floor, among at least
``min_peers`` nodes) and its ranks are held up by the margin above. The two are measured apart (the
kernel's CPU accounting on the node, the training hook's step timing in the ranks), and a window is
itself an average over its whole length: with 96 CPUs and 5-minute windows, standing 4 points of CPU
time apart means about 18 CPUs waiting for more than a minute of it, while its ranks lose a tenth of a
step each step. What persistence filters (a checkpoint written at once by every node, a short burst) is
filtered by the peers' median and by the two margins; the rest is the node's storage holding its ranks
up, which is this fault, however briefly.

The finding is on the node (layer ``storage``, no GPU) and explains the job's symptoms (``cluster``): in
synchronous training every rank waits for the held-up ones. A single bundle has no history, so there
only the two signals agreeing make a finding, read over the bundle's totals (CPU time since each node
booted, the ranks' phases since they started) rather than a window; its stragglers are
:mod:`fleetscope.collectors.detectors.stragglers`'.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleetscope.collectors.detectors.base import Detector
from fleetscope.collectors.detectors.stragglers import PHASES, STEP_SUM, STEPS
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.history import (
    DEVIATION_SCORE,
    DEVIATION_WINDOWS,
    PeerMetric,
    peer_metrics,
    robust_scores,
    share,
)
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.topology import SERIES as TOPOLOGY_SERIES
from fleetscope.collectors.topology import Topology

#: The hook's phases that are compute or communication; the rest of a step is where its host I/O happens.
BUSY_PHASES = ("forward", "backward", "optimizer", "collective_wait")


@dataclass(slots=True)
class _Rank:
    """One rank's rises in the window."""

    steps: float = 0.0
    took: float = 0.0
    busy: float = 0.0
    evidence: Evidence | None = None


class SlowStorageDetector(Detector):
    """Nodes whose CPUs waited on I/O apart from their job's peers, with their ranks held up."""

    name = "slow_storage"
    series = (
        *(m.name for m in peer_metrics() if m.per == "node"),
        DEVIATION_WINDOWS,
        DEVIATION_SCORE,
        STEPS,
        STEP_SUM,
        PHASES,
        *TOPOLOGY_SERIES,
    )

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        storage = {m.name: m for m in peer_metrics() if m.per == "node" and m.layer == "storage" and m.share}
        apart: dict[tuple[str, str, str], dict[str, Evidence]] = {}
        counters: dict[str, dict[str, list[Evidence]]] = {}
        ranks: dict[tuple[str, str], _Rank] = {}
        for e in evidence:
            if e.kind != "metric" or e.node is None:
                continue
            name, labels, value = e.attrs["name"], e.attrs["labels"], float(e.attrs["value"])
            if name in (DEVIATION_WINDOWS, DEVIATION_SCORE) and labels.get("metric") in storage:
                apart.setdefault((e.node, labels.get("job", ""), labels["metric"]), {})[name] = e
            elif name in storage:
                counters.setdefault(name, {}).setdefault(e.node, []).append(e)
            elif name in (STEPS, STEP_SUM, PHASES) and labels.get("rank"):
                rank = ranks.setdefault((e.node, labels["rank"]), _Rank())
                if name == STEPS:
                    rank.steps = value
                elif name == STEP_SUM:
                    rank.took, rank.evidence = value, e
                elif labels.get("phase") in BUSY_PHASES:
                    rank.busy += value
        if not apart and not (counters and ranks):
            return
        topology = self.topology(evidence)
        found: set[tuple[str, str]] = set()
        for (node, job, metric), pair in sorted(apart.items()):
            windows, score = pair.get(DEVIATION_WINDOWS), pair.get(DEVIATION_SCORE)
            if windows is None or score is None:
                continue
            found.add((node, job))
            held = _held_up(node, job, ranks, topology)
            yield _finding(
                node, job, storage[metric], (windows, score), counters.get(metric, {}), held, ranks, topology
            )
        # Two signals that agree in this window need no persistence (module docstring).
        for peer in storage.values():
            for (node, job), z in _apart_now(peer, counters.get(peer.name, {}), topology):
                if (node, job) in found:
                    continue
                held = _held_up(node, job, ranks, topology)
                if held is not None:
                    found.add((node, job))
                    yield _finding(node, job, peer, z, counters.get(peer.name, {}), held, ranks, topology)


def _apart_now(
    metric: PeerMetric, counters: dict[str, list[Evidence]], topology: Topology
) -> list[tuple[tuple[str, str], float]]:
    """The nodes whose share of ``metric`` in this window stands above their job's peers', as the history
    scores it each window (robust z over the metric's spread floor, at least ``min_peers`` nodes).

    Returns:
        ``((node, job), robust z)`` per node apart, in node order.
    """
    if metric.share is None:
        return []
    label, wanted = metric.share
    shares = {
        node: value
        for node, samples in counters.items()
        for value in [share(((e.attrs["labels"], float(e.attrs["value"])) for e in samples), label, wanted)]
        if value is not None
    }
    out = []
    for job, members in topology.groups(sorted(shares)).items():
        if (metric.jobs_only and not job) or len(members) < scoring("persistent_deviation.min_peers"):
            continue
        scores = robust_scores([shares[node] for node in members], metric.spread_floor)
        out += [
            ((node, job), z)
            for node, z in zip(members, scores, strict=True)
            if z >= scoring("persistent_deviation.z")
        ]
    return out


def _finding(
    node: str,
    job: str,
    metric: PeerMetric,
    deviation: tuple[Evidence, Evidence] | float,
    counters: dict[str, list[Evidence]],
    held: tuple[str, float, float, float] | None,
    ranks: dict[tuple[str, str], _Rank],
    topology: Topology,
) -> Finding:
    """The finding for one node apart on the I/O-wait share of ``metric``.

    Args:
        deviation: The history's ``(windows in a row, score)`` series where the wait persisted, or the
            robust z of this window alone (two signals agreeing, ``held`` then given).
        held: :func:`_held_up`'s answer for the node.
    """
    label, wanted = metric.share or ("", "")  # only metrics with a share are read here

    def node_share(where: str) -> float | None:
        return share(((e.attrs["labels"], float(e.attrs["value"])) for e in counters[where]), label, wanted)

    peers = f"job {job}" if job else "the cluster"
    own = node_share(node) if node in counters else None
    others = [
        s
        for other in counters
        if other != node and (not job or job in topology.jobs_of(other))
        for s in [node_share(other)]
        if s is not None
    ]
    waited = (
        f"{node}'s CPUs spent {own:.1%} of their time waiting on I/O in the window while the other "
        f"{len(others)} nodes of {peers} spent a median of {statistics.median(others):.1%}"
        if own is not None and others
        else f"{node}'s CPUs spent more of their time waiting on I/O than the other nodes of {peers}"
    )
    # The deviation, then the node's own waiting samples (the lines an engineer can check; of
    # node_exporter's one per CPU, the first few stand for the rest).
    evidence: list[Evidence] = []
    if isinstance(deviation, tuple):
        windows, score = deviation
        waited += (
            f" (robust z {float(score.attrs['value']):+.1f}), for "
            f"{float(windows.attrs['value']):.0f} windows in a row"
        )
        evidence += [windows, score]
    else:
        waited += f" (robust z {deviation:+.1f}, in this one window)"
    evidence += [e for e in counters.get(node, ()) if e.attrs["labels"].get(label) == wanted][:4]
    if held is not None:
        rank, extra, median, step = held
        summary = (
            f"{waited}; its rank {rank} spends {extra:.3g} s per step outside compute and collectives "
            f"against {median:.3g} s for the job's median rank (steps of {step:.3g} s): the node's "
            "storage holds the job up (checkpoint writes, a slow or failing disk or file system)"
        )
        if (found := ranks[(node, rank)].evidence) is not None:
            evidence.append(found)
    else:
        summary = (
            f"{waited}: its storage is slow or busy; no training series of its ranks show whether it "
            "holds the job up"
        )
    return Finding(
        explains="cluster",
        kind="slow_storage",
        layer="storage",
        role="cause",
        severity="warning",
        weight=scoring("slow_storage.weight") if held else scoring("slow_storage.iowait_only_weight"),
        summary=summary,
        action=f"check the storage {node} writes checkpoints and reads data from: the mounts' "
        "throughput and latency (iostat -x, nfsiostat, the parallel file system's client stats), "
        "I/O errors in its kernel log, the local disks' health (smartctl); compare with a peer and "
        f"drain {node} if it stays slow",
        node=node,
        evidence=evidence,
        certainty="likely" if held else "unsure",
    )


def _held_up(
    node: str, job: str, ranks: dict[tuple[str, str], _Rank], topology: Topology
) -> tuple[str, float, float, float] | None:
    """The rank of ``node`` that spends the most time per step outside compute and collectives, where
    that is at least ``slow_storage.min_step_share`` of the job's median step above the job's median rank.

    Returns:
        ``(rank, its seconds per step, the job's median rank's, the job's median step)``, or None.
    """
    off: dict[tuple[str, str], float] = {}
    steps: list[float] = []
    for (where, rank), r in ranks.items():
        found = topology.ranks.get((where, int(rank))) if rank.isdigit() else None
        if (found.job if found else "") != job or r.steps < scoring("stragglers.min_steps") or r.took <= 0:
            continue
        off[(where, rank)] = max(0.0, r.took - r.busy) / r.steps
        steps.append(r.took / r.steps)
    own = {rank: seconds for (where, rank), seconds in off.items() if where == node}
    if not own or len(off) < scoring("stragglers.min_ranks"):
        return None
    median, step = statistics.median(off.values()), statistics.median(steps)
    rank = max(own, key=lambda r: own[r])
    if own[rank] - median < scoring("slow_storage.min_step_share") * step:
        return None
    return rank, own[rank], median, step
