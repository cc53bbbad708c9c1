"""Fabric health between nodes: InfiniBand port state and one node's nccl-tests bandwidth.

Sources: node_exporter's infiniband collector (``node_infiniband_port_state_id``, read from
``/sys/class/infiniband/<dev>/ports/<port>/state``: 1 down, 2 init, 3 armed, 4 active;
``node_infiniband_link_downed_total`` and ``node_infiniband_symbol_error_total`` from the port's
``counters/``), and the ``# Avg bus bandwidth`` line of nccl-tests.

* A port that is not ACTIVE cannot carry traffic: every rank whose ring or tree crosses it stalls, so it
  explains collective failures on every node of the job.
* A node whose nccl-tests bus bandwidth is far below the other nodes' (``fabric.slow_ratio`` of their
  median, with at least ``fabric.min_nodes`` nodes to compare) is slow, but the number alone does not say
  why: it is a symptom placed on that node.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from fleetscope.collectors.detectors.base import Detector
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring

#: ``/sys/class/infiniband/*/ports/*/state`` values (``ib_port_state`` of ib_verbs.h).
PORT_STATES = {0: "NOP", 1: "DOWN", 2: "INIT", 3: "ARMED", 4: "ACTIVE", 5: "ACTIVE_DEFER"}
_ACTIVE = (4, 5)
#: A node at or below this share of the other nodes' median bus bandwidth is slow.
_PORT_STATE = "node_infiniband_port_state_id"
_PORT_ERRORS = ("node_infiniband_link_downed_total", "node_infiniband_symbol_error_total")


class FabricDetector(Detector):
    """InfiniBand ports not ACTIVE; a node whose nccl-tests bandwidth lags the others'."""

    name = "fabric"
    series = (_PORT_STATE, *_PORT_ERRORS)

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        errors: dict[tuple[Any, ...], list[Evidence]] = {}
        down: list[Evidence] = []
        busbw: dict[str | None, list[Evidence]] = {}
        for e in evidence:
            if e.kind == "metric":
                name = e.attrs["name"]
                value = e.attrs["value"]
                if name == _PORT_STATE and isinstance(value, int | float) and int(value) not in _ACTIVE:
                    down.append(e)
                elif name in _PORT_ERRORS and isinstance(value, int | float) and value > 0:
                    errors.setdefault(_port(e), []).append(e)
            elif e.kind == "nccl_tests_busbw":
                busbw.setdefault(e.node, []).append(e)
        for e in down:
            port = _port(e)
            extra = errors.get(port, [])
            counts = "".join(
                f", {x.attrs['name'].removeprefix('node_infiniband_')} {x.attrs['value']:g}" for x in extra
            )
            state = PORT_STATES.get(int(e.attrs["value"]), str(e.attrs["value"]))
            yield Finding(
                kind="ib_port_not_active",
                layer="network",
                role="cause",
                severity="error",
                weight=scoring("fabric.port_down_weight"),
                summary=f"InfiniBand port {port[1]}/{port[2]} on {e.node or 'an unknown node'} is {state}, "
                f"not ACTIVE{counts}: collectives crossing it cannot complete",
                action=f"check the cable, transceiver and switch port of {port[1]} on {e.node}; "
                "ibstat / iblinkinfo show the link state; drain the node until the port is ACTIVE",
                node=e.node,
                evidence=[e, *extra],
                explains="cluster",
            )
        yield from _slow_nodes(busbw)


def _port(e: Evidence) -> tuple[str | None, str, str]:
    labels = e.attrs.get("labels", {})
    return (e.node, str(labels.get("device", "?")), str(labels.get("port", "?")))


def _slow_nodes(busbw: dict[str | None, list[Evidence]]) -> Iterable[Finding]:
    best = {node: max(evs, key=lambda e: e.attrs["gb_per_s"]) for node, evs in busbw.items() if node}
    if len(best) < scoring("fabric.min_nodes"):
        return
    for node, e in best.items():
        others = [o.attrs["gb_per_s"] for n, o in best.items() if n != node]
        median = statistics.median(others)
        value = e.attrs["gb_per_s"]
        if median <= 0 or value > scoring("fabric.slow_ratio") * median:
            continue
        yield Finding(
            explains="cluster",
            kind="nccl_tests_slow_node",
            layer=None,
            role="symptom",
            severity="warning",
            weight=scoring("fabric.slow_node_weight"),
            summary=f"nccl-tests on {node} reach {value:g} GB/s bus bandwidth while the other "
            f"{len(others)} nodes reach a median of {median:g} GB/s: {node} is slow; the tests do not "
            "say why (NVLink, PCIe, NIC or a co-located job)",
            action=f"drain {node}; compare its nvidia-smi topo -m, nvlink -s / -e, PCIe link widths and "
            "NIC ports with a good node's, and rerun the test on it alone",
            node=node,
            evidence=[e],
            certainty="unsure",
        )
