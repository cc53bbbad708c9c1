"""Cypher statements for writes: each write is one idempotent statement (``MERGE`` on ``id``).

One statement per write is what makes a write all-or-nothing on every backend: FalkorDB does not
undo a rolled-back multi-statement transaction, but a failing statement leaves nothing behind.
Labels and relationship types come from :mod:`fleetscope.lineage.schema`; every value is a bound parameter.
Nodes are merged on their ``key`` (:func:`fleetscope.lineage.schema.node_key`); ``id`` is set when a
node is created. A statement sets ``created_at`` from its ``now`` parameter, which is the audit
record's time, so replaying the log rebuilds the same graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetscope.lineage.schema import ENTITIES, Entity, LineageError, check_props, node_key

# Incident layers that put a GPU's results in doubt (silent data corruption).
HARDWARE_LAYERS: tuple[str, ...] = ("gpu_hardware", "gpu_memory", "nvlink", "thermal_power")


@dataclass(frozen=True)
class Link:
    """One relationship to write with a node.

    Attributes:
        rel: relationship type from the entity's rules (``USED``, ``PRODUCED`` ...).
        label: label of the node at the other end.
        id: id of that node; it is created (with only ``id`` and ``created_at``) if missing, so
            writes may arrive in any order (the command line asks for ``--create`` first).
    """

    rel: str
    label: str
    id: str

    @classmethod
    def parse(cls, text: str) -> Link:
        """Parse ``REL:Label:id`` (the command line's ``--link``).

        Raises:
            LineageError: not three colon-separated parts.
        """
        parts = text.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise LineageError(f"a link is REL:Label:id, got {text!r}")
        return cls(parts[0].upper(), parts[1], parts[2])


@dataclass(frozen=True)
class Statement:
    """A Cypher statement with its bound parameters."""

    cypher: str
    params: dict[str, Any]


def ref(node_id: str) -> dict[str, str]:
    """A node reference as statements bind it: ``{"k": key, "i": id}``."""
    return {"k": node_key(node_id), "i": node_id}


def entity_of(label: str) -> Entity:
    """Look a label up in the model.

    Raises:
        LineageError: unknown label.
    """
    try:
        return ENTITIES[label]
    except KeyError:
        raise LineageError(f"unknown entity {label!r} (known: {', '.join(ENTITIES)})") from None


def record_statement(
    label: str, node_id: str, props: dict[str, Any], links: list[Link], now: str
) -> Statement:
    """Build the statement that records one node and its relationships.

    Args:
        label: the node's entity label.
        node_id: stable id (non-empty).
        props: properties to set (checked by :func:`fleetscope.lineage.schema.check_props`).
        links: relationships to write from (or, for incoming rules, to) the node.
        now: ``created_at`` for nodes this statement creates.

    Returns:
        One ``MERGE`` statement returning ``id``.

    Raises:
        LineageError: unknown label, property or relationship, or an empty id.
    """
    entity = entity_of(label)
    if not node_id:
        raise LineageError(f"{label} needs a non-empty id")
    clean = check_props(entity, props)
    groups: dict[tuple[str, str, bool], list[str]] = {}
    for link in links:
        rule = entity.link_index.get((link.rel, link.label))
        if rule is None:
            allowed = ", ".join(f"{rel}->{target}" for rel, target in entity.link_index) or "none"
            raise LineageError(f"{label} cannot record {link.rel} to {link.label} (allowed: {allowed})")
        if not link.id:
            raise LineageError(f"{label} link {link.rel} to {link.label} needs an id")
        ids = groups.setdefault((link.rel, link.label, rule.outgoing), [])
        if link.id not in ids:
            ids.append(link.id)
    params: dict[str, Any] = {"key": node_key(node_id), "id": node_id, "props": clean, "now": now}
    lines = [
        f"MERGE (n:{label} {{key: $key}})",
        "ON CREATE SET n.id = $id, n.created_at = $now",
        "SET n += $props",
    ]
    for index, ((rel, target, outgoing), ids) in enumerate(sorted(groups.items())):
        arrow = f"(n)-[:{rel}]->(m)" if outgoing else f"(m)-[:{rel}]->(n)"
        params[f"l{index}"] = [ref(i) for i in ids]
        lines.append(
            f"FOREACH (t IN $l{index} | MERGE (m:{target} {{key: t.k}}) "
            f"ON CREATE SET m.id = t.i, m.created_at = $now MERGE {arrow})"
        )
    lines.append("RETURN n.id AS id")
    return Statement("\n".join(lines), params)


def incident_statement(
    incident_id: str,
    props: dict[str, Any],
    hosts: list[str],
    gpus: list[str],
    job_ids: list[str],
    now: str,
) -> Statement:
    """Build the statement that records a collector incident and links it to the runs it touched.

    A run is touched when its ``job_id`` is one of ``job_ids``, or when it ran on one of the
    incident's hosts or GPUs while the incident was open (``started_at`` .. ``ended_at``; an open
    incident or run extends to the end of time).

    Args:
        incident_id: the collector's incident id.
        props: Incident properties (``started_at`` is required for the time overlap).
        hosts: Host ids the incident is ON.
        gpus: GPU ids (UUIDs) the incident is ON.
        job_ids: scheduler job ids named by the incident.
        now: ``created_at`` for new nodes.

    Returns:
        One statement returning ``id``.

    Raises:
        LineageError: bad properties or no ``started_at``.
    """
    clean = check_props(ENTITIES["Incident"], props)
    if not clean.get("started_at"):
        raise LineageError("an Incident needs started_at to be matched with runs")
    cypher = """
MERGE (i:Incident {key: $key})
ON CREATE SET i.id = $id, i.created_at = $now
SET i += $props
FOREACH (h IN $host_refs | MERGE (x:Host {key: h.k}) ON CREATE SET x.id = h.i, x.created_at = $now
  MERGE (i)-[:ON]->(x))
FOREACH (g IN $gpu_refs | MERGE (x:GPU {key: g.k}) ON CREATE SET x.id = g.i, x.created_at = $now
  MERGE (i)-[:ON]->(x))
WITH i
OPTIONAL MATCH (i)-[:ON]->()<-[:RAN_ON]-(r1:Run)
WHERE r1.started_at <= coalesce(i.ended_at, $forever) AND coalesce(r1.ended_at, $forever) >= i.started_at
WITH i, collect(DISTINCT r1) AS by_place
OPTIONAL MATCH (r2:Run) WHERE r2.job_id IN $job_ids
WITH i, by_place, collect(DISTINCT r2) AS by_job
FOREACH (r IN by_place + by_job | MERGE (i)-[:AFFECTED]->(r))
RETURN i.id AS id
"""
    params = {
        "key": node_key(incident_id),
        "id": incident_id,
        "props": clean,
        "hosts": hosts,
        "gpus": gpus,
        "host_refs": [ref(h) for h in hosts],
        "gpu_refs": [ref(g) for g in gpus],
        "job_ids": job_ids,
        "now": now,
        "forever": "9999-12-31T23:59:59.999999Z",
    }
    return Statement(cypher.strip(), params)
