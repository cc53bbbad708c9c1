"""One GPU's error counters far above its peers' (DCGM and fleetscope counters).

Error counters are compared across every GPU of the bundle (all nodes of a job), per metric: a GPU whose
count is at least ``min_count`` and ``ratio`` times both the peers' median and every other GPU's count
is an outlier (``knowledge/scoring.yaml``, section ``peer_deviation``; the action by layer is in
``peer_deviation_actions``). A fleet where many GPUs count errors is not one GPU's fault and is left to
other detectors. Layers by counter: ECC and remapped rows (``DCGM_FI_DEV_ECC_*``,
``DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS``) to gpu_memory, NVLink CRC/replay/recovery to nvlink, PCIe
replays to gpu_hardware, thermal/power violation time to thermal_power.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from fleetscope.collectors.detectors.base import Detector, Template, where
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring, scoring_text


def _layer(metric: str) -> str | None:
    low = metric.lower()
    if "ecc" in low or "remapped_rows" in low:
        return "gpu_memory"
    if "nvlink" in low and any(k in low for k in ("crc", "replay", "recovery", "error")):
        return "nvlink"
    if "pcie_replay" in low:
        return "gpu_hardware"
    if "thermal_violation" in low or "power_violation" in low:
        return "thermal_power"
    return None


class PeerDeviationDetector(Detector):
    """Error-counter outliers among all GPUs of the bundle."""

    name = "peer_deviation"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        series: dict[str, dict[tuple[Any, ...], Evidence]] = {}
        for e in evidence:
            if e.kind != "metric" or e.gpu is None:
                continue
            name = e.attrs["name"]
            if _layer(name) is None:
                continue
            series.setdefault(name, {})[(e.node, e.gpu)] = e
        for name, by_gpu in series.items():
            if len(by_gpu) < scoring("peer_deviation.min_gpus"):
                continue
            layer = _layer(name)
            for key, e in by_gpu.items():
                value = float(e.attrs["value"])
                others = [float(o.attrs["value"]) for k, o in by_gpu.items() if k != key]
                median = statistics.median(others)
                ratio = scoring("peer_deviation.ratio")
                if (
                    not math.isfinite(value)
                    or value < scoring("peer_deviation.min_count")
                    or value < ratio * max(median, 1.0)
                    or value < ratio * max(max(others), 1.0)
                ):
                    continue
                yield Finding(
                    explains="cluster",
                    kind=f"peer_deviation:{name}",
                    layer=layer,
                    role="cause",
                    severity="error",
                    weight=scoring("peer_deviation.weight"),
                    summary=f"{where(e.node, e.gpu, e.gpu_pci_bus_id)} reports {name} = {value:.4g} "
                    "while the "
                    f"other {len(others)} GPUs report a median of {median:.4g}"
                    + (": its HBM is degrading" if layer == "gpu_memory" else ""),
                    action=scoring_text(f"peer_deviation_actions.{layer}").format_map(
                        Template(node=e.node, gpu=e.gpu)
                    ),
                    node=e.node,
                    gpu=e.gpu,
                    gpu_pci_bus_id=e.gpu_pci_bus_id,
                    evidence=[e],
                )
