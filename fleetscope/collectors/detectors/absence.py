"""A node or a GPU that stopped answering (live windows only).

The live collector's history (:mod:`fleetscope.collectors.history`) states absence as series of the
window: ``fleetscope_collector_target_down_windows`` on a node whose exporter answered before and does
not now, ``fleetscope_collector_gpu_missing_windows{gpu}`` on a GPU whose series an exporter that still
answers no longer serves (the driver stopped enumerating it: fallen off the bus, lost). Each is a cause
that explains the job's symptoms (the other ranks then time out in their collectives). A bundle has no
such series, so this detector finds nothing in one that the collector did not write.
Weights: ``absence`` in ``knowledge/scoring.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.history import GPU_MISSING, TARGET_DOWN
from fleetscope.collectors.knowledge import scoring


class AbsenceDetector(Detector):
    """Nodes whose exporter stopped answering, GPUs whose series vanished."""

    name = "absence"
    series = (TARGET_DOWN, GPU_MISSING)

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        for e in evidence:
            if e.kind != "metric":
                continue
            name, windows = e.attrs["name"], e.attrs["value"]
            if name not in (TARGET_DOWN, GPU_MISSING) or not windows >= scoring("absence.min_windows"):
                continue
            span = f"{windows:.0f} window(s)"
            if name == TARGET_DOWN:
                yield Finding(
                    explains="cluster",
                    kind="absence:node",
                    layer="host_software",
                    role="cause",
                    severity="critical",
                    weight=scoring("absence.node_weight"),
                    summary=f"The exporter of {e.node} answered before and has not answered for {span}: the "
                    "node died, hung or fell off the network (the collector sees that it is gone, not why)",
                    action=f"check {e.node} from its console or BMC (power, kernel panic, network); drain it "
                    "and restart the job without it",
                    node=e.node,
                    evidence=[e],
                    certainty="likely",
                )
            elif e.gpu is not None:
                yield Finding(
                    explains="cluster",
                    kind="absence:gpu",
                    layer="gpu_hardware",
                    role="cause",
                    severity="critical",
                    weight=scoring("absence.gpu_weight"),
                    summary=f"{where(e.node, e.gpu, None)} had series before and has had none for {span} "
                    "while its exporter still answers: the driver no longer sees the GPU (fallen off the bus "
                    "or lost)",
                    action=f"drain {e.node}; read its kernel log for Xid 79 or 'fallen off the bus', then "
                    f"reset or reseat GPU {e.gpu}",
                    node=e.node,
                    gpu=e.gpu,
                    evidence=[e],
                    certainty="likely",
                )
