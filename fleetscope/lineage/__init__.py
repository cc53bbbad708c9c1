"""fleetscope lineage: the graph of who trained what, on which data, and where it runs.

Graph model (:mod:`fleetscope.lineage.schema`), stores by URI (:mod:`fleetscope.lineage.store`), one-statement
writes (:mod:`fleetscope.lineage.writes`), OpenLineage ingestion (:mod:`fleetscope.lineage.openlineage`), the
audit query pack (:mod:`fleetscope.lineage.queries`), the tamper-evident audit log
(:mod:`fleetscope.lineage.auditlog`), the service that ties them (:mod:`fleetscope.lineage.service`) and the
OpenLineage HTTP endpoint (:mod:`fleetscope.lineage.server`).
"""

from fleetscope.lineage.auditlog import AuditLog, Verification, verify_log
from fleetscope.lineage.incidents import record_collector_incident
from fleetscope.lineage.openlineage import InvalidEvent, parse_event
from fleetscope.lineage.queries import QUERIES, AuditQuery, run_audit
from fleetscope.lineage.schema import ENTITIES, LineageError
from fleetscope.lineage.service import IngestStats, Lineage
from fleetscope.lineage.store import GraphStore, ReadOnlyViolation, StoreError, open_store
from fleetscope.lineage.writes import Link

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
