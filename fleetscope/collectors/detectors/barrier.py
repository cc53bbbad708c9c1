"""A watchdog timeout on a barrier, with nothing else wrong: a rank was busy outside collectives.

``dist.barrier()`` on NCCL is a one-element all-reduce (``OpType=BARRIER``, or ``ALLREDUCE`` with
``NumelIn=1, NumelOut=1`` in older PyTorch). Ranks wait there while one of them does work outside
collectives (rank 0 saving a checkpoint, an evaluation, a slow data step); if that takes longer than the
process group's timeout, the watchdog kills the job though nothing failed. Where every watchdog timeout
of the bundle is such a collective and no other error is in it, the finding says so, points at the
job's timeout, and is unsure: the bundle cannot show what the late rank was doing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector, occurrences
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring

#: Error kinds that only echo the timeout itself (the watchdog, PyTorch's abort, the exception it raises).
ECHOES = frozenset({"c10d_watchdog_timeout", "nccl_failed_or_timed_out", "nccl_result", "exception"})


def _one_element(e: Evidence) -> bool:
    op = str(e.attrs.get("op", "")).upper()
    return op == "BARRIER" or (e.attrs.get("numel_in") == 1 and e.attrs.get("numel_out") == 1)


class BarrierTimeoutDetector(Detector):
    """Watchdog timeouts on barriers in a bundle that shows no fault."""

    name = "barrier_timeout"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        timeouts = [e for e in evidence if e.kind == "c10d_watchdog_timeout"]
        if not timeouts or not all(_one_element(e) for e in timeouts):
            return
        if any(e.severity in ("error", "critical") and e.kind not in ECHOES for e in evidence):
            return
        first = timeouts[0]
        timeout_s = int(first.attrs.get("timeout_ms") or 0) / 1000
        nodes = sorted({e.node for e in timeouts if e.node})
        yield Finding(
            kind="c10d_barrier_timeout",
            layer="job",
            role="symptom",
            severity="error",
            weight=scoring("barrier_timeout.weight"),
            summary=f"The NCCL watchdog timed out on a barrier (SeqNum {first.attrs.get('seq')}, a "
            f"one-element collective) after {timeout_s:.0f} s on {', '.join(nodes) or 'the job'}, and the "
            "bundle shows no fault: most likely some rank was busy outside collectives (a checkpoint save, "
            "an evaluation, a slow data step) for longer than the process group's timeout",
            action="find what the last rank to reach the barrier was doing (its log around that step); raise "
            "the process group timeout (init_process_group(timeout=...)) above the longest checkpoint or "
            "evaluation, or make that work asynchronous",
            evidence=timeouts[:10],
            explains="cluster",
            count=occurrences(timeouts),
            certainty="unsure",  # the bundle cannot show what the late rank was doing
        )
