"""nccl-tests runs over node pairs or node sets: the node common to the slow runs is the culprit.

A run is slow at or below ``nccl_tests_runs.slow_ratio`` (``scoring.yaml``) of the median bus bandwidth of
the faster half of the runs (at least ``nccl_tests_runs.min_runs`` runs). A node that is in every slow run
and in no fast one carries the slow path (its NIC, its links, its PCIe): a cause in the network layer, as
these runs cross nodes.
Where several nodes fit (one slow pair of two nodes), the runs cannot tell them apart: a symptom naming
them, unsure. Where the slow runs share no node, each node that is in two or more slow runs and no fast
one is named.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring


class NcclTestsRunsDetector(Detector):
    """The node common to slow nccl-tests runs."""

    name = "nccl_tests_runs"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        runs = [e for e in evidence if e.kind == "nccl_tests_run" and len(e.attrs.get("nodes") or ()) >= 2]
        if len(runs) < scoring("nccl_tests_runs.min_runs"):
            return
        # The reference is the median of the faster half: up to half the runs may cross the slow node.
        values = sorted(float(e.attrs["busbw_gb_s"]) for e in runs)
        median = statistics.median(values[len(values) // 2 :])
        slow = [
            e for e in runs if float(e.attrs["busbw_gb_s"]) <= scoring("nccl_tests_runs.slow_ratio") * median
        ]
        fast = [e for e in runs if e not in slow]
        if not slow or not fast:
            return
        nodes = sorted({n for e in runs for n in e.attrs["nodes"]})
        in_fast = {n for e in fast for n in e.attrs["nodes"]}
        common = [n for n in nodes if n not in in_fast and all(n in e.attrs["nodes"] for e in slow)]
        worst = min(float(e.attrs["busbw_gb_s"]) for e in slow)
        said = (
            f"{len(slow)} of {len(runs)} nccl-tests runs were slow (down to {worst:g} GB/s against "
            f"{median:g} GB/s for the faster half)"
        )
        if len(common) == 1:
            yield _culprit(common[0], said, slow)
        elif common:
            yield Finding(
                kind="nccl_tests_slow_runs",
                layer="network",
                role="symptom",
                severity="warning",
                weight=scoring("nccl_tests_runs.shared_nodes_weight"),
                summary=f"{said}; {', '.join(common)} are in every slow run and in no fast one, and the runs "
                "cannot tell which of them is slow",
                action="run each of them against a node of a fast run to split them",
                evidence=slow[:10],
                explains="cluster",
                certainty="unsure",  # the runs cannot split the nodes they share
            )
        else:
            for node in nodes:
                hits = [e for e in slow if node in e.attrs["nodes"]]
                if node not in in_fast and len(hits) >= 2:
                    yield _culprit(node, said, hits)


def _culprit(node: str, said: str, slow: list[Evidence]) -> Finding:
    return Finding(
        kind="nccl_tests_slow_path",
        layer="network",
        role="cause",
        severity="error",
        weight=scoring("nccl_tests_runs.culprit_weight"),
        summary=f"{said}; {node} is in every one of them and in no fast run: the slow path is on {node} "
        "(its network adapters, their links or their PCIe slots)",
        action=f"drain {node}; check its adapters (ibstat / ethtool link speed and errors, PCIe link width "
        "of each NIC), run ib_write_bw between it and a node of a fast run, and swap the cable or NIC that "
        "lags",
        node=node,
        evidence=slow[:10],
        explains="cluster",
        certainty="likely",  # bandwidth of node sets points at a node, not at the part of it that lags
    )
