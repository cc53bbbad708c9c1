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
    #: The names ``_layer`` gives a layer: ECC, remapped rows, PCIe replays, violations; NVLink errors.
    series = (
        r"(?i:.*(ecc|remapped_rows|pcie_replay|thermal_violation|power_violation))",
        r"(?i:(?=.*nvlink).*(crc|replay|recovery|error))",
    )

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
            layer = _layer(name)
            # One sort per metric; each GPU's peers are the sorted values without its own position, so
            # their median and maximum are two index lookups (linear in GPUs, not quadratic).
            # A value that is not a number (NaN) is no count of errors: left out of the peers.
            ranked = sorted(
                (item for item in by_gpu.items() if math.isfinite(float(item[1].attrs["value"]))),
                key=lambda item: float(item[1].attrs["value"]),
            )
            values = [float(e.attrs["value"]) for _, e in ranked]
            if len(values) < scoring("peer_deviation.min_gpus"):
                continue
            for position, (_, e) in enumerate(ranked):
                value = values[position]
                median = _median_without(values, position)
                highest = values[-1] if position != len(values) - 1 else values[-2]
                ratio = scoring("peer_deviation.ratio")
                if (
                    value < scoring("peer_deviation.min_count")
                    or value < ratio * max(median, 1.0)
                    or value < ratio * max(highest, 1.0)
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
                    f"other {len(values) - 1} GPUs report a median of {median:.4g}"
                    + (": its HBM is degrading" if layer == "gpu_memory" else ""),
                    action=scoring_text(f"peer_deviation_actions.{layer}").format_map(
                        Template(node=e.node, gpu=e.gpu)
                    ),
                    node=e.node,
                    gpu=e.gpu,
                    gpu_pci_bus_id=e.gpu_pci_bus_id,
                    evidence=[e],
                )


def _median_without(ordered: list[float], position: int) -> float:
    """The median of ``ordered`` (sorted) without the item at ``position``."""
    m = len(ordered) - 1

    def at(j: int) -> float:
        return ordered[j if j < position else j + 1]

    return (at((m - 1) // 2) + at(m // 2)) / 2
