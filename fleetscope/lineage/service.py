"""The lineage service: graph writes, OpenLineage ingestion and audit queries over one store,
with every write also appended to the tamper-evident audit log.

Writes are serialised by a lock so the audit log's order is the order the graph saw. A write goes
to the graph first and to the log second: a write the graph refuses is not logged, and since every
write is idempotent, replaying the log rebuilds the graph.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetscope.lineage.auditlog import AuditLog
from fleetscope.lineage.openlineage import InvalidEvent, event_statement, parse_event
from fleetscope.lineage.queries import run_audit
from fleetscope.lineage.schema import ENTITIES, now_text
from fleetscope.lineage.store.base import GraphStore, Row
from fleetscope.lineage.writes import Link, Statement, incident_statement, record_statement

# Properties the audit queries filter on besides ``id``.
LOOKUPS = [("Run", "job_id"), ("Deployment", "endpoint"), ("Incident", "layer")]


@dataclass
class IngestStats:
    """Counts of OpenLineage events: ``accepted`` (written or, for JobEvents, logged only),
    ``rejected`` (quarantined) and the rejection reasons in order."""

    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


class Lineage:
    """Writes and queries over a graph store, logged to an audit log.

    Args:
        store: an open graph store; its schema is ensured here.
        log: the audit log every write is appended to.
        quarantine: JSON-lines file that keeps rejected OpenLineage events with their reason.
    """

    def __init__(self, store: GraphStore, log: AuditLog, quarantine: Path) -> None:
        self.store = store
        self.log = log
        self.quarantine = Path(quarantine)
        self.stats = IngestStats()
        self._lock = threading.Lock()
        store.ensure_schema(list(ENTITIES), LOOKUPS)

    def _apply(self, op: str, statement: Statement, data: dict[str, Any]) -> list[Row]:
        with self._lock:
            rows = self.store.write(statement.cypher, statement.params)
            self.log.append(op, data)
        return rows

    def record(
        self, label: str, node_id: str, props: dict[str, Any] | None = None, links: list[Link] | None = None
    ) -> str:
        """Record one node of the graph model and its relationships (idempotent).

        Args:
            label: entity label (see :data:`fleetscope.lineage.schema.ENTITIES`).
            node_id: stable id.
            props: properties (``*_at`` values as ISO-8601 or aware datetimes).
            links: relationships to other nodes, created as id-only nodes if missing.

        Returns:
            The node id.

        Raises:
            fleetscope.lineage.schema.LineageError: the model refuses the write; nothing is written.
            lineage.store.base.StoreError: the store failed; nothing is written.
        """
        now = now_text()
        statement = record_statement(label, node_id, dict(props or {}), list(links or []), now)
        data = {
            "label": label,
            "id": node_id,
            "props": statement.params["props"],
            "links": [[link.rel, link.label, link.id] for link in links or []],
        }
        self._apply("record", statement, data)
        return node_id

    def record_incident(
        self,
        incident_id: str,
        props: dict[str, Any],
        *,
        hosts: list[str] | None = None,
        gpus: list[str] | None = None,
        job_ids: list[str] | None = None,
    ) -> str:
        """Record a collector incident and link it to the runs it touched: runs of the named
        scheduler jobs, and runs on its hosts or GPUs whose time overlaps it.

        Raises:
            fleetscope.lineage.schema.LineageError: bad properties; nothing is written.
            lineage.store.base.StoreError: the store failed; nothing is written.
        """
        statement = incident_statement(
            incident_id, dict(props), list(hosts or []), list(gpus or []), list(job_ids or []), now_text()
        )
        data = {
            "id": incident_id,
            "props": statement.params["props"],
            "hosts": statement.params["hosts"],
            "gpus": statement.params["gpus"],
            "job_ids": statement.params["job_ids"],
        }
        self._apply("incident", statement, data)
        return incident_id

    def ingest(self, raw: str | bytes, *, source: str = "api") -> dict[str, Any]:
        """Validate and apply one OpenLineage event.

        Args:
            raw: the event's JSON text.
            source: where it came from (file:line or ``api``), kept with a rejected event.

        Returns:
            The decoded event.

        Raises:
            InvalidEvent: the event is invalid; it was quarantined and counted, and nothing of it
                was written.
        """
        try:
            event = parse_event(raw)
            statement = event_statement(event, now_text())
        except InvalidEvent as exc:
            self._reject(raw, source, str(exc))
            raise
        with self._lock:
            if statement is not None:
                self.store.write(statement.cypher, statement.params)
            self.log.append("openlineage", {"event": event})
            self.stats.accepted += 1
        return event

    def _reject(self, raw: str | bytes, source: str, reason: str) -> None:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        entry = {"received_at": now_text(), "source": source, "reason": reason, "event": text}
        with self._lock:
            self.quarantine.parent.mkdir(parents=True, exist_ok=True)
            with open(self.quarantine, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.stats.rejected += 1
            self.stats.reasons.append(reason)

    def ingest_file(self, path: Path) -> IngestStats:
        """Ingest a JSON-lines file of events, one per line; bad lines are quarantined and counted.

        Returns:
            The counts for this file.
        """
        stats = IngestStats()
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    self.ingest(line, source=f"{path}:{line_no}")
                    stats.accepted += 1
                except InvalidEvent as exc:
                    stats.rejected += 1
                    stats.reasons.append(f"line {line_no}: {exc}")
        return stats

    def audit(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run a named audit query (see :mod:`fleetscope.lineage.queries`) in a read-only session."""
        return run_audit(self.store, name, params)

    def query(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run a free-form statement in a read-only session (the console's query box).

        Raises:
            lineage.store.base.ReadOnlyViolation: the statement would write.
        """
        return self.store.read(cypher, params)

    def close(self) -> None:
        """Close the store (stopping an embedded server this process started)."""
        self.store.close()
