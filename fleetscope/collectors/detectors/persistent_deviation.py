"""A GPU that stood apart from its job's peers for several windows in a row (after Minder, NSDI 2025).

The live collector's history (:mod:`fleetscope.collectors.history`) does the comparison, since it needs
windows before this one: it scores every GPU per metric against its job's peers with a robust z-score,
in the priority order of ``persistent_deviation.metrics`` (``knowledge/scoring.yaml``), and writes a
member that stood apart for ``persist_windows`` windows as
``fleetscope_collector_peer_deviation_windows{gpu,job,metric}`` and ``..._score``. This detector turns
those series into findings: a cause on that GPU, in the metric's layer, that explains the job's slowdown.
A metric with no layer (utilisation: the GPU only waits) gives an ``unsure`` finding. A single bundle
has no such series; its error-counter outliers are :mod:`fleetscope.collectors.detectors.peer_deviation`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.history import DEVIATION_SCORE, DEVIATION_WINDOWS, peer_metrics
from fleetscope.collectors.knowledge import scoring

_SIDE = {"high": "above", "low": "below", "both": "apart from"}


class PersistentDeviationDetector(Detector):
    """GPUs whose metric stood apart from their job's peers for several windows."""

    name = "persistent_deviation"
    series = (DEVIATION_WINDOWS, DEVIATION_SCORE)

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        metrics = {m.name: m for m in peer_metrics() if m.per == "gpu"}  # node metrics: slow_storage's
        found: dict[tuple[str | None, int | None, str, str], dict[str, Evidence]] = {}
        for e in evidence:
            if e.kind != "metric":
                continue
            name = e.attrs["name"]
            labels = e.attrs["labels"]
            if name in (DEVIATION_WINDOWS, DEVIATION_SCORE) and labels.get("metric") in metrics:
                key = (e.node, e.gpu, labels["metric"], labels.get("job", ""))
                found.setdefault(key, {})[name] = e
        for (node, gpu, metric, job), pair in found.items():
            windows, score = pair.get(DEVIATION_WINDOWS), pair.get(DEVIATION_SCORE)
            if windows is None or score is None:
                continue
            z = float(score.attrs["value"])
            side = "above" if z > 0 else "below"
            layer = metrics[metric].layer
            peers = f"the other GPUs of job {job}" if job else "the other GPUs of the cluster"
            yield Finding(
                explains="cluster",
                kind=f"persistent_deviation:{metric}",
                layer=layer,
                role="cause",
                severity="warning",
                weight=scoring("persistent_deviation.weight"),
                summary=f"{where(node, gpu, windows.gpu_pci_bus_id)} has stood {side} {peers} on {metric} "
                f"for {float(windows.attrs['value']):.0f} windows in a row (robust z {z:+.1f}; "
                f"a fault is {_SIDE[metrics[metric].side]} the peers): it is slowing the job",
                action=f"compare GPU {gpu} on {node} with its peers (nvidia-smi -q -d CLOCK,PERFORMANCE,"
                "TEMPERATURE,POWER), check its cooling and clock-event reasons, and drain the node if it "
                "stays apart",
                node=node,
                gpu=gpu,
                gpu_pci_bus_id=windows.gpu_pci_bus_id,
                evidence=[windows, score],
                certainty="likely" if layer else "unsure",
            )
