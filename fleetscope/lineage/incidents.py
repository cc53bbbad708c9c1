"""Collector incidents in the lineage graph: which runs a hardware or network fault touched.

The live collector (:class:`fleetscope.collectors.live.LiveCollector`) keeps its incidents in SQLite; with a
lineage store configured, each one is also recorded here as an ``Incident`` node ON its GPU (the
``GPU`` node whose ``host`` and ``index`` or ``pci_bus_id`` match the culprit) or, when the graph knows
no such GPU, ON its host, and linked (``AFFECTED``) to the runs there whose time overlaps it, so the
audit query ``incident_exposure`` can answer which models a faulty GPU may have corrupted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleetscope.collectors.incidents import Incident
from fleetscope.lineage.service import Lineage


def _started_at(incident: Incident) -> datetime:
    """When the fault began: its earliest timestamped evidence, else when the collector first saw it."""
    times = []
    for item in incident.report.get("timeline", []):
        try:
            times.append(datetime.fromisoformat(str(item.get("time"))))
        except ValueError:
            continue  # untimed evidence (kernel uptime stamps, plain lines)
    aware = [t for t in times if t.tzinfo is not None]
    return min([*aware, incident.first_seen])


def record_collector_incident(lineage: Lineage, incident: Incident) -> str:
    """Record one collector incident and link it to the runs it touched (idempotent).

    The incident's id is its fingerprint, so a fault the collector reports on every cycle stays one
    node; its properties are refreshed each time.

    Args:
        lineage: the lineage service to write through (one statement, audit-logged).
        incident: an incident from the collector's store.

    Returns:
        The Incident node's id.

    Raises:
        fleetscope.lineage.schema.LineageError: the incident's properties do not fit the model.
        lineage.store.base.StoreError: the store failed; nothing was written.
    """
    top: dict[str, Any] = incident.report["root_causes"][0]
    gpus: list[str] = []
    if incident.node and (incident.gpu is not None or top.get("gpu_pci_bus_id")):
        rows = lineage.query(
            "MATCH (g:GPU) WHERE g.host = $host AND (g.index = $index OR g.pci_bus_id = $bus) "
            "RETURN g.id AS id ORDER BY id",
            {"host": incident.node, "index": incident.gpu, "bus": top.get("gpu_pci_bus_id")},
        )
        gpus = [str(row["id"]) for row in rows]
    props = {
        "layer": incident.layer,
        "kind": top.get("kind"),
        "summary": incident.summary,
        "started_at": _started_at(incident),
        "source": "fleetscope collect",
    }
    return lineage.record_incident(
        f"incident-{incident.fingerprint}",
        {k: v for k, v in props.items() if v is not None},
        hosts=[incident.node] if incident.node and not gpus else [],
        gpus=gpus,
    )
