"""Straggler ranks and stalled progress, from the training hook's per-rank series.

**Straggler.** In synchronous data-parallel training every rank waits in the gradient all-reduce until
the slowest rank arrives, so all ranks take about as long per step and the slow rank is the one that
*waits least* (Minder, NSDI 2025, and the PyTorch DDP communication-hook design: the wait of the others
is the straggler's extra compute). Per rank, the collective wait per step is
``fleetscope_training_phase_seconds_total{phase="collective_wait"}`` over ``fleetscope_training_steps_total``
(``exporters/training.py``); among the ranks of one job (:class:`~fleetscope.collectors.topology.Topology`)
a rank whose wait per step is ``stragglers.z`` robust standard deviations below the median, while the
ranks spend at least ``min_wait_share`` of their step time waiting, is the straggler. In a live window
the series are increases over the window; in a bundle, totals since the ranks started. The same fact
says every rank of the job takes its steps in the same time: a rank whose mean step in the window is
more than ``step_tolerance`` away from the job's median step was read over another stretch of time
(its exporter was scraped at another moment while the job's pace changed) and is not compared. The
step number says the same more directly: synchronous ranks finish the same step together, so ranks
read at the same moment show the same ``fleetscope_training_step``. A window covers the steps
``(step - steps_in_window, step]``; a rank whose first or last step of the window lies more than
``align_share`` of the job's median steps in the window from the job's median was read at other
moments, however steady the pace, and is not compared either. Each node's exporter is scraped at its
own moments, so this aligns the nodes' windows by the training's own clock. It matters most in short
windows: in a window of eight steps, one step more at the start of a node's window, taken while a
straggler held the job, raises its ranks' wait per step by a sixth, and the node whose window lacks
that step reads as eight ranks that wait less than their peers.

**Stalled progress.** The live collector's history states two kinds of stall:
``fleetscope_collector_training_stalled_windows{rank}`` (a rank that took steps before took none in the
whole window) and, sooner, ``fleetscope_collector_training_stalled_seconds{rank}`` (a rank whose last
step is older, at the source's time of the window, than a read's lag and several of its steps explain).
Where a stalled rank's GPU is idle (utilisation under ``stall_utilization``) while other stalled ranks'
GPUs stay busy (spinning in the collective that waits for it), that rank starves for input and is the
cause; either kind of stall names it, since the two signals (its steps stopped, its GPU alone idle) agree.
A rank that alone writes a checkpoint while the others wait for it in a barrier (``torch.save`` on rank 0
only) reads the same once the save outlasts the bound of the stall by age (a quarter window and five
steps by default); savers of sharded checkpoints (every rank writes) idle every GPU, which is no shape
that names a rank.
Where every stalled rank's GPU idles, the job waits for its input everywhere (data loading, shared
storage) and the finding names no node; where every GPU stays busy, steps stopped in a hung collective or
kernel, which is a symptom of a cause elsewhere, unless other ranks of the job still took steps in the
window: a synchronous job stops as a whole, so those ranks' windows end at another moment (the job just
stopped or resumed), and the next window says which. These two need a whole window without a step: a job
that pauses everywhere for a while (a checkpoint written by every rank, an evaluation) looks the same
for a minute or two. The rank's GPU is the topology's (its local rank on its node).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.history import (
    STALLED,
    STALLED_SECONDS,
    STEP_SUM,
    STEPS,
    UTILIZATION,
    robust_scores,
)
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.topology import SERIES as TOPOLOGY_SERIES
from fleetscope.collectors.topology import Topology

PHASES = "fleetscope_training_phase_seconds_total"
STEP_NUMBER = "fleetscope_training_step"

_RankKey = tuple[str | None, str]


class StragglerRankDetector(Detector):
    """The rank the others wait for; ranks that stopped taking steps."""

    name = "stragglers"
    series = (
        PHASES,
        STEPS,
        STEP_SUM,
        f"{STEP_NUMBER}$",
        STALLED,
        STALLED_SECONDS,
        *UTILIZATION,
        *TOPOLOGY_SERIES,
    )

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        topology = self.topology(evidence)
        wait: dict[_RankKey, Evidence] = {}
        steps: dict[_RankKey, float] = {}
        took: dict[_RankKey, float] = {}
        last: dict[_RankKey, float] = {}
        stalled: dict[_RankKey, Evidence] = {}
        utilization: dict[tuple[str | None, int], float] = {}
        for e in evidence:
            if e.kind != "metric":
                continue
            name, labels, value = e.attrs["name"], e.attrs["labels"], float(e.attrs["value"])
            rank = labels.get("rank", "")
            if name == PHASES and labels.get("phase") == "collective_wait" and rank:
                wait[(e.node, rank)] = e
            elif name == STEPS and rank:
                steps[(e.node, rank)] = value
            elif name == STEP_SUM and rank:
                took[(e.node, rank)] = value
            elif name == STEP_NUMBER and rank and math.isfinite(value):
                last[(e.node, rank)] = value
            elif name in (STALLED, STALLED_SECONDS) and rank:
                # Whole windows first: the stall that needs no read's timing and says the most.
                if name == STALLED or (e.node, rank) not in stalled:
                    stalled[(e.node, rank)] = e
            elif name in UTILIZATION and e.gpu is not None and math.isfinite(value):
                utilization[(e.node, e.gpu)] = value * UTILIZATION[name]
        yield from self._stragglers(topology, wait, steps, took, last)
        stepping = {self._job_and_gpu(topology, key)[0] for key, n in steps.items() if n > 0}
        yield from self._stalls(topology, stalled, utilization, stepping)

    @staticmethod
    def _job_and_gpu(topology: Topology, key: _RankKey) -> tuple[str, int | None]:
        node, rank = key
        found = topology.ranks.get((node, int(rank))) if node is not None and rank.isdigit() else None
        return (found.job, found.gpu) if found else ("", None)

    def _stragglers(
        self,
        topology: Topology,
        wait: dict[_RankKey, Evidence],
        steps: dict[_RankKey, float],
        took: dict[_RankKey, float],
        last: dict[_RankKey, float],
    ) -> Iterator[Finding]:
        jobs: dict[str, dict[_RankKey, tuple[float, float]]] = {}
        for key, e in wait.items():
            n = steps.get(key, 0.0)
            if n < scoring("stragglers.min_steps") or key not in took or took[key] <= 0:
                continue
            per_step = float(e.attrs["value"]) / n
            jobs.setdefault(self._job_and_gpu(topology, key)[0], {})[key] = (
                per_step,
                per_step * n / took[key],
            )
        for job, timed in jobs.items():
            # Synchronous ranks take their steps in the same time; one that did not was read over another
            # stretch of time (module docstring) and is left out.
            pace = sorted(took[key] / steps[key] for key in timed)[len(timed) // 2]
            ranks = {
                key: value
                for key, value in timed.items()
                if abs(took[key] / steps[key] - pace) <= scoring("stragglers.step_tolerance") * pace
            }
            ranks = {key: ranks[key] for key in _aligned(ranks, steps, last)}
            if len(ranks) < scoring("stragglers.min_ranks"):
                continue
            shares = sorted(share for _, share in ranks.values())
            if shares[len(shares) // 2] < scoring("stragglers.min_wait_share"):
                continue
            waits = [per_step for per_step, _ in ranks.values()]
            median = sorted(waits)[len(waits) // 2]
            apart = len(timed) - len(ranks)
            peers = f"{len(ranks) - 1} peers" + (
                f" (of {len(timed) - 1}; {apart} read over other steps are left out)" if apart else ""
            )
            for (key, (per_step, _)), z in zip(ranks.items(), robust_scores(waits), strict=True):
                if z > -scoring("stragglers.z"):
                    continue
                node, rank = key
                gpu = self._job_and_gpu(topology, key)[1]
                yield Finding(
                    explains="cluster",
                    kind="straggler_rank",
                    layer=None,
                    role="cause",
                    severity="warning",
                    weight=scoring("stragglers.straggler_weight"),
                    summary=f"Rank {rank}{' of job ' + job if job else ''} on {where(node, gpu, None)} waits "
                    f"{per_step:.3g} s per step in collectives while its {peers} wait a "
                    f"median of {median:.3g} s (robust z {z:+.1f}): the others wait for it, so it is the "
                    "straggler",
                    action=f"look at {node}"
                    + (f" GPU {gpu}" if gpu is not None else "")
                    + ": clocks and clock-event reasons, temperature, co-located processes, its data loader "
                    "and host CPU; drain the node if it stays slow",
                    node=node,
                    gpu=gpu,
                    evidence=[wait[key]],
                    certainty="likely",
                )

    def _stalls(
        self,
        topology: Topology,
        stalled: dict[_RankKey, Evidence],
        utilization: dict[tuple[str | None, int], float],
        stepping: set[str],
    ) -> Iterator[Finding]:
        jobs: dict[str, dict[_RankKey, float | None]] = {}
        for key in stalled:
            job, gpu = self._job_and_gpu(topology, key)
            jobs.setdefault(job, {})[key] = utilization.get((key[0], gpu)) if gpu is not None else None
        idle_below = scoring("stragglers.stall_utilization")
        for job, ranks in jobs.items():
            idle = sorted((k for k, u in ranks.items() if u is not None and u < idle_below), key=str)
            busy = sorted((k for k, u in ranks.items() if u is not None and u >= idle_below), key=str)
            named = f" of job {job}" if job else ""
            if idle and busy:
                for key in idle:
                    node, rank = key
                    gpu = self._job_and_gpu(topology, key)[1]
                    yield self._stall(
                        key,
                        stalled,
                        f"Rank {rank}{named} on {where(node, gpu, None)} has taken no step for "
                        f"{_how_long(stalled[key])} and its GPU is idle while the other {len(ranks) - 1} "
                        "stalled ranks' GPUs stay busy waiting for it: it is starved of input (its data "
                        "loader, its storage or its host)",
                        "cause",
                        gpu,
                        weight=scoring("stragglers.starved_weight"),
                    )
                continue
            # A pause of every rank alike says nothing until it has lasted a whole window (module docstring).
            idle = [k for k in idle if stalled[k].attrs["name"] == STALLED]
            busy = [k for k in busy if stalled[k].attrs["name"] == STALLED]
            if idle:
                first = idle[0]
                yield self._stall(
                    first,
                    stalled,
                    f"All {len(idle)} ranks{named} have taken no step for {_how_long(stalled[first])} and "
                    "their GPUs are idle: the job waits for its input everywhere (shared storage, the data "
                    "pipeline)",
                    "cause",
                    None,
                    every=idle,
                )
            elif busy and job not in stepping:
                first = busy[0]
                yield self._stall(
                    first,
                    stalled,
                    f"{len(busy)} rank(s){named} have taken no step for {_how_long(stalled[first])} while "
                    "their GPUs stay busy: a hung collective or kernel",
                    "symptom",
                    None,
                    every=busy,
                )

    @staticmethod
    def _stall(
        key: _RankKey,
        stalled: dict[_RankKey, Evidence],
        summary: str,
        role: str,
        gpu: int | None,
        every: list[_RankKey] | None = None,
        weight: float | None = None,
    ) -> Finding:
        cause = role == "cause"
        if weight is None:
            weight = scoring("stragglers.stall_weight") if cause else scoring("stragglers.hang_weight")
        return Finding(
            explains="cluster",
            kind="progress_stall" if cause else "progress_hang",
            layer="data_pipeline" if cause else None,
            role="cause" if cause else "symptom",
            severity="error",
            weight=weight,
            summary=summary,
            action="read the stalled rank's log for data-loader errors or slow reads, and check the storage "
            "it reads (mount, throughput, errors)"
            if cause
            else "find the rank that is missing from the collective (py-spy dump, NCCL debug logs) and the "
            "fault that stopped it",
            node=key[0] if gpu is not None or every is None else None,
            gpu=gpu,
            evidence=[stalled[k] for k in (every or [key])],
            certainty="unsure",
        )


def _aligned(
    ranks: Iterable[_RankKey], steps: dict[_RankKey, float], last: dict[_RankKey, float]
) -> list[_RankKey]:
    """The ranks whose window covers the same steps as the job's median rank's (module docstring).

    Args:
        ranks: The ranks of one job that took steps in the window.
        steps: Steps per rank in the window (the increase of ``fleetscope_training_steps_total``).
        last: Each rank's last step number (``fleetscope_training_step``); a rank without one is kept,
            as only its pace can be checked.

    Returns:
        The ranks, in order, less those whose first or last step of the window lies more than
        ``stragglers.align_share`` of the median steps from the median's.
    """
    ranks = list(ranks)
    numbered = [key for key in ranks if key in last]
    if not numbered:
        return ranks
    ends = sorted(last[key] for key in numbered)
    starts = sorted(last[key] - steps[key] for key in numbered)
    span = sorted(steps[key] for key in numbered)[len(numbered) // 2]
    end, start = ends[len(ends) // 2], starts[len(starts) // 2]
    bound = scoring("stragglers.align_share") * span
    return [
        key
        for key in ranks
        if key not in last or (abs(last[key] - end) <= bound and abs(last[key] - steps[key] - start) <= bound)
    ]


def _how_long(stall: Evidence) -> str:
    """How long a stall has lasted, in the unit of its series (windows, or seconds by the source's time)."""
    value = float(stall.attrs["value"])
    return f"{value:.0f} window(s)" if stall.attrs["name"] == STALLED else f"{value:.0f} s"
