"""The lineage graph model: node labels, their properties and the relationships each may write.

This table is the one place that says what the graph may hold. Every write is checked against it
before any Cypher is built, and labels and relationship types reach Cypher only from here (Cypher
cannot bind a label as a parameter), never from user input.

Beyond the contract in docs/design.md the model adds the relationships the audit queries and
OpenLineage need: ``(DatasetVersion)-[:VERSION_OF]->(Dataset)`` (personal-data and licence flags
live on the dataset), ``(Run)-[:PRODUCED]->(DatasetVersion)`` (an OpenLineage output),
``(Run)-[:CHILD_OF]->(Run)`` (the ``parent`` facet: an Airflow task in its DAG run, a Spark job in
its application), ``(Dataset)-[:ALIAS_OF]->(Dataset)`` (the ``symlinks`` facet) and
``(Dataset)-[:OWNED_BY]->(Person)`` (the ``ownership`` facet).

Every node carries its ``id`` (any text, as given) and a ``key`` (:func:`node_key`) that the store
indexes and keeps unique: see :mod:`fleetscope.lineage.store.base`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PropValue = str | int | float | bool | list[str] | list[int] | list[float] | None


class LineageError(ValueError):
    """A write or query that the graph model refuses (unknown label, property or relationship)."""


@dataclass(frozen=True)
class LinkRule:
    """One relationship an entity may write.

    Attributes:
        rel: relationship type, e.g. ``"USED"``.
        targets: labels allowed at the other end.
        outgoing: True for ``(entity)-[rel]->(target)``, False for ``(target)-[rel]->(entity)``
            (a Person GAVE an Approval is recorded from the Approval).
    """

    rel: str
    targets: tuple[str, ...]
    outgoing: bool = True


@dataclass(frozen=True)
class Entity:
    """A node label: its documented properties and the relationships it records.

    Attributes:
        label: node label.
        props: property names a write may set besides ``id`` and ``created_at``. Names ending in
            ``_at`` are instants, stored as ISO-8601 UTC strings so they compare as text.
        links: relationships written together with the node.
        description: one line for ``fleetscope lineage record --help``.
    """

    label: str
    props: tuple[str, ...]
    links: tuple[LinkRule, ...] = ()
    description: str = ""
    link_index: dict[tuple[str, str], LinkRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {(rule.rel, target): rule for rule in self.links for target in rule.targets}
        object.__setattr__(self, "link_index", index)


ENTITIES: dict[str, Entity] = {
    e.label: e
    for e in (
        Entity(
            "Dataset",
            ("name", "namespace", "licence", "licence_restricted", "contains_personal_data", "owner"),
            (LinkRule("ALIAS_OF", ("Dataset",)), LinkRule("OWNED_BY", ("Person",))),
            "a logical data set; flags for personal data and restricted licences",
        ),
        Entity(
            "DatasetVersion",
            ("name", "namespace", "version", "uri", "digest", "facets", "contains_personal_data"),
            (LinkRule("VERSION_OF", ("Dataset",)),),
            "one immutable version of a data set",
        ),
        Entity("Config", ("name", "digest", "uri"), description="a training or evaluation configuration"),
        Entity("Code", ("repo", "commit", "branch"), description="a source commit"),
        Entity(
            "Run",
            (
                "job_namespace",
                "job_name",
                "job_id",
                "state",
                "started_at",
                "ended_at",
                "facets",
                "job_facets",
            ),
            (
                LinkRule("USED", ("DatasetVersion", "Config", "Code", "Checkpoint")),
                LinkRule("PRODUCED", ("Checkpoint", "Model", "DatasetVersion")),
                LinkRule("RAN_ON", ("Host", "GPU")),
                LinkRule("CHILD_OF", ("Run",)),
            ),
            "one execution of a training, fine-tuning or data job",
        ),
        Entity("Checkpoint", ("uri", "step", "digest"), description="weights saved by a run"),
        Entity(
            "Model",
            ("name", "version", "uri", "digest"),
            (LinkRule("DERIVED_FROM", ("Model",)),),
            "a named, versioned model",
        ),
        Entity(
            "Evaluation",
            ("benchmark", "metric", "score", "started_at", "finished_at"),
            (LinkRule("EVALUATED", ("Model",)), LinkRule("USED", ("DatasetVersion",))),
            "a model evaluated on a benchmark",
        ),
        Entity(
            "Approval",
            ("decision", "approved_at", "comment"),
            (LinkRule("APPROVED", ("Model", "Deployment")), LinkRule("GAVE", ("Person",), outgoing=False)),
            "a sign-off on a model or deployment, given by a person",
        ),
        Entity(
            "Deployment",
            ("endpoint", "environment", "started_at", "ended_at"),
            (LinkRule("SERVES", ("Model",)),),
            "a model served at an endpoint from started_at until ended_at (open if unset)",
        ),
        Entity("Person", ("name", "email"), description="someone who approves or owns things"),
        Entity(
            "Incident",
            ("layer", "kind", "severity", "summary", "started_at", "ended_at", "source"),
            (LinkRule("AFFECTED", ("Run",)), LinkRule("ON", ("Host", "GPU"))),
            "a collector incident (hardware, network, framework, job)",
        ),
        Entity("Host", ("hostname", "cluster"), description="a node of the cluster"),
        Entity("GPU", ("uuid", "index", "pci_bus_id", "host", "model"), description="one GPU, by UUID"),
    )
}


def node_key(node_id: str) -> str:
    """The key a node is stored and found under: the SHA-256 (hex) of its id's UTF-8 bytes.

    Any id the spec allows (blanks at either end, control characters, megabytes of text) becomes
    64 hex digits that every engine indexes (see :mod:`fleetscope.lineage.store.base`).
    """
    return hashlib.sha256(node_id.encode("utf-8", "surrogatepass")).hexdigest()


def utc_text(value: datetime | str) -> str:
    """Normalise an instant to the one text form the graph stores.

    Both backends compare these strings; a fixed-width UTC form makes text order equal time order.
    FalkorDB's Bolt endpoint rejects temporal parameters, hence text rather than ``datetime``.

    Args:
        value: an aware ``datetime`` or ISO-8601 text (``Z`` or an offset; naive means UTC).

    Returns:
        ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    Raises:
        LineageError: the text is not ISO-8601.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise LineageError(f"not an ISO-8601 time: {value!r}") from exc
    else:
        parsed = value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_text() -> str:
    """The current instant in the stored text form (see :func:`utc_text`)."""
    return utc_text(datetime.now(UTC))


def check_props(entity: Entity, props: dict[str, Any]) -> dict[str, PropValue]:
    """Validate and normalise the properties of one write.

    Args:
        entity: the node's entity.
        props: name to value; values are str, int, float, bool, a list of one of those, or None
            (None removes the property).

    Returns:
        The properties with ``*_at`` values normalised by :func:`utc_text`.

    Raises:
        LineageError: an unknown property, or a value the graph cannot store (maps are refused:
            neither Neo4j nor FalkorDB stores a map as a property; store JSON text instead).
    """
    clean: dict[str, PropValue] = {}
    for name, value in props.items():
        if name not in entity.props:
            allowed = ", ".join(entity.props)
            raise LineageError(f"{entity.label} has no property {name!r} (allowed: {allowed})")
        if name.endswith("_at") and value is not None:
            value = utc_text(value)
        if isinstance(value, list):
            if any(isinstance(v, (dict, list)) or v is None for v in value):
                raise LineageError(f"{entity.label}.{name}: a list may hold only str, int, float or bool")
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise LineageError(f"{entity.label}.{name}: {type(value).__name__} cannot be stored")
        clean[name] = value
    return clean
