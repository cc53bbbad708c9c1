"""Fault counters that rose too fast within a window (live windows only).

In a live window every counter is its increase over the window, and the collector states the window's
length as ``fleetscope_collector_window_seconds`` (:mod:`fleetscope.collectors.history`). A counter of
``rates.limits`` (``knowledge/scoring.yaml``: ECC and remapped rows, NVLink CRC/replay/recovery, EFA
retransmits and unresponsive peers, InfiniBand link and symbol errors) that rose by at least its
``per_window`` count, or at ``per_second`` or faster, is a fault happening now; so is a GPU held below
its clocks by a thermal, board-limit or reliability policy for ``rates.throttle_share`` of the window
(``fleetscope_gpu_clock_event_violation_seconds_total``, NVML's ``nvmlDeviceGetViolationStatus``).
Counters of the same GPU or node and name (one per link, port or device) are summed, and the summary
names the links and ports that rose with what the topology says is at their other end (the NVLink's
remote device from ``fleetscope_nvlink_info``, the port's link layer from
``fleetscope_infiniband_port_info``). A bundle's counters are totals since a driver load, not increases,
and carry no window length: nothing here reads them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector, Template, where
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.history import WINDOW_SECONDS
from fleetscope.collectors.knowledge import scoring, scoring_list, scoring_text
from fleetscope.collectors.topology import SERIES as TOPOLOGY_SERIES
from fleetscope.collectors.topology import Topology

THROTTLE = "fleetscope_gpu_clock_event_violation_seconds_total"


class RatesDetector(Detector):
    """Fault counters whose rise in the window passed its limit; throttle time by reason."""

    name = "rates"
    series = (
        WINDOW_SECONDS,
        THROTTLE,
        *TOPOLOGY_SERIES,
        *(str(e["name"]) for e in scoring_list("rates.limits")),
    )

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        evidence = [e for e in evidence if e.kind == "metric"]
        topology = self.topology(evidence)
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
                f"{window:.0f} s{rate}{_where_it_rose(topology, node, gpu, items)}; {limit['why']}",
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


def _where_it_rose(topology: Topology, node: str | None, gpu: int | None, items: list[Evidence]) -> str:
    """`` on link 3 (to 0000:1b:00.0)`` or `` on mlx5_0 port 1 (InfiniBand)``: the links or ports whose
    counters rose, with what the topology says about their other end; ``""`` where the series name none."""
    risen = [e.attrs["labels"] for e in items if float(e.attrs["value"]) > 0]
    links = sorted({int(labels["link"]) for labels in risen if labels.get("link", "").isdigit()})
    if links and node is not None and gpu is not None:
        remote = topology.links.get((node, gpu), {})
        named = [f"{link} (to {remote[link]})" if remote.get(link) else str(link) for link in links]
        return f" on link{'s' if len(links) > 1 else ''} {', '.join(named)}"
    ports = sorted({(labels["device"], labels.get("port", "")) for labels in risen if labels.get("device")})
    if ports and node is not None:
        layers = topology.nics.get(node, {})
        named = [
            f"{device} port {port}" + (f" ({layers[(device, port)]})" if layers.get((device, port)) else "")
            for device, port in ports
        ]
        return f" on {', '.join(named)}"
    return ""
