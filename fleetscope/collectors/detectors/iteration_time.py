"""Iteration-time jumps in a training log: the job slowed down.

One log's iteration time cannot say which rank is slow (every rank of a synchronous job takes as long as
the slowest), so this names no straggler; per-rank stragglers are
:mod:`fleetscope.collectors.detectors.stragglers`. A jump is only a symptom. When nothing else in the
bundle explains it, the correlator promotes it with a low confidence and an explicit "cause not found",
which is the honest answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring


class IterationTimeJumpDetector(Detector):
    """Iteration-time jumps per node (or per cluster-wide log)."""

    name = "iteration_time_jump"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        jumps: dict[str | None, list[Evidence]] = {}
        for e in evidence:
            if e.kind == "iteration_time_jump":
                jumps.setdefault(e.node, []).append(e)
        for node, evs in jumps.items():
            first, last = evs[0], evs[-1]
            steps = " -> ".join(f"{e.attrs['after_s']:.4g} s" for e in evs[:6])
            yield Finding(
                explains="cluster",
                kind="iteration_time_jump",
                layer=None,
                role="symptom",
                severity="warning",
                weight=scoring("iteration_time_jump.weight"),
                summary=f"Iteration time{' on ' + node if node else ''} jumped from "
                f"{first.attrs['before_s']:.4g} s to "
                f"{steps}{_times(first.attrs['before_s'], last.attrs['after_s'])}; "
                "possible causes: a slow GPU, the network, another job on the same GPUs",
                action="compare per-rank step times to find the straggler rank, and look at GPU utilisation, "
                "clocks and co-located processes on its node at the time of the jump",
                node=node,
                evidence=evs,
                count=len(evs),
                certainty="unsure",
            )


def _times(before: float, after: float) -> str:
    """`` (x3.2)``: how many times the level grew, or ``""`` where the level it left was not positive."""
    return f" (x{after / before:.1f})" if before > 0 else ""
