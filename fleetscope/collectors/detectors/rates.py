"""Fault counters that rose too fast within a window (live windows only).

In a live window every counter is its increase over the window, and the collector states the window's
length as ``fleetscope_collector_window_seconds`` (:mod:`fleetscope.collectors.history`). A counter of
``rates.limits`` (``knowledge/scoring.yaml``: ECC and remapped rows, NVLink CRC/replay/recovery, EFA
retransmits and unresponsive peers, InfiniBand link and symbol errors) that rose by at least its
``per_window`` count, or at ``per_second`` or faster, is a fault happening now; so is a GPU held below
its clocks by a thermal, board-limit or reliability policy for ``rates.throttle_share`` of the window
(``fleetscope_gpu_clock_event_violation_seconds_total``, NVML's ``nvmlDeviceGetViolationStatus``).
Counters of the same GPU or node and name (one per link, port or device) are summed. A bundle's counters
are totals since a driver load, not increases, and carry no window length: nothing here reads them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector, Template, where
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.history import WINDOW_SECONDS
from fleetscope.collectors.knowledge import scoring, scoring_list, scoring_text

THROTTLE = "fleetscope_gpu_clock_event_violation_seconds_total"


class RatesDetector(Detector):
    """Fault counters whose rise in the window passed its limit; throttle time by reason."""

    name = "rates"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        evidence = [e for e in evidence if e.kind == "metric"]
        windows = {e.node: float(e.attrs["value"]) for e in evidence if e.attrs["name"] == WINDOW_SECONDS}
        limits = {str(entry["name"]): entry for entry in scoring_list("rates.limits")}
        reasons = {str(r) for r in scoring_list("rates.throttle_reasons")}
        rises: dict[tuple[str | None, int | None, str], list[Evidence]] = {}
        for e in evidence:
            name = e.attrs["name"]
            if e.node not in windows or not math.isfinite(float(e.attrs["value"])):
                continue
            if name in limits:
                rises.setdefault((e.node, e.gpu, name), []).append(e)
            elif name == THROTTLE and e.attrs["labels"].get("reason") in reasons:
                rises.setdefault((e.node, e.gpu, f"{name}:{e.attrs['labels']['reason']}"), []).append(e)
        for (node, gpu, name), items in rises.items():
            window = windows[node]
            rise = sum(float(e.attrs["value"]) for e in items)
            if name.startswith(THROTTLE):
                reason = name.rpartition(":")[2]
                share = rise / window if window > 0 else 0.0
                if share < scoring("rates.throttle_share"):
                    continue
                yield self._finding(
                    node,
                    gpu,
                    f"rate:throttle:{reason}",
                    "thermal_power",
                    f"{where(node, gpu, items[0].gpu_pci_bus_id)} was held below its clocks by the {reason} "
                    f"policy for {rise:.0f} s of the last {window:.0f} s ({share:.0%})",
                    items,
                )
                continue
            limit = limits[name]
            per_window = limit.get("per_window")
            per_second = limit.get("per_second")
            over = (per_window is not None and rise >= float(per_window)) or (
                per_second is not None and window > 0 and rise / window >= float(per_second)
            )
            if not over:
                continue
            rate = f" ({rise / window:.3g}/s)" if per_second is not None and window > 0 else ""
            yield self._finding(
                node,
                gpu,
                f"rate:{name}",
                str(limit["layer"]),
                f"{where(node, gpu, items[0].gpu_pci_bus_id)}: {name} rose by {rise:.0f} in the last "
                f"{window:.0f} s{rate}; {limit['why']}",
                items,
            )

    @staticmethod
    def _finding(
        node: str | None, gpu: int | None, kind: str, layer: str, summary: str, items: list[Evidence]
    ) -> Finding:
        action = scoring_text(f"peer_deviation_actions.{layer}").format_map(Template(node=node, gpu=gpu))
        return Finding(
            explains="cluster",
            kind=kind,
            layer=layer,
            role="cause",
            severity="error",
            weight=scoring("rates.weight"),
            summary=summary,
            action=action,
            node=node,
            gpu=gpu,
            gpu_pci_bus_id=items[0].gpu_pci_bus_id,
            evidence=items,
        )
