"""fleetscope lineage: the graph of who trained what, on which data, and where it runs.

Graph model (:mod:`lineage.schema`), stores by URI (:mod:`lineage.store`), one-statement writes
(:mod:`lineage.writes`), OpenLineage ingestion (:mod:`lineage.openlineage`), the audit query pack
(:mod:`lineage.queries`), the tamper-evident audit log (:mod:`lineage.auditlog`), the service that
ties them (:mod:`lineage.service`) and the OpenLineage HTTP endpoint (:mod:`lineage.server`).
"""

from lineage.auditlog import AuditLog, Verification, verify_log
from lineage.incidents import record_collector_incident
from lineage.openlineage import InvalidEvent, parse_event
from lineage.queries import QUERIES, AuditQuery, run_audit
from lineage.schema import ENTITIES, LineageError
from lineage.service import IngestStats, Lineage
from lineage.store import GraphStore, ReadOnlyViolation, StoreError, open_store
from lineage.writes import Link

__all__ = [
    "ENTITIES",
    "QUERIES",
    "AuditLog",
    "AuditQuery",
    "GraphStore",
    "IngestStats",
    "InvalidEvent",
    "Lineage",
    "LineageError",
    "Link",
    "ReadOnlyViolation",
    "StoreError",
    "Verification",
    "open_store",
    "parse_event",
    "record_collector_incident",
    "run_audit",
    "verify_log",
]
