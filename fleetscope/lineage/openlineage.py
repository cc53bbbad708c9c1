"""OpenLineage in: validate an event against the spec, then map it onto the graph in one statement.

Validation uses the OpenLineage JSON schemas shipped in ``lineage/spec`` (Apache-2.0, see
``spec/SOURCES.txt``): the event schema (RunEvent, DatasetEvent, JobEvent) and every standard facet
schema, applied to the facet of that name in the container it belongs to (run, job, dataset, input
or output facets). Custom facets are checked only against the base facet (``_producer`` and
``_schemaURL``), as the spec allows. A facet marked ``_deleted`` is not checked. A standard facet
that fails its schema (an older shape) is set aside, not the event (:class:`SetAside`).

Mapping (a RunEvent, see :func:`event_statement`): ``run.runId`` (lower case) is the Run id; the
job's namespace and name, the event type (state) and the facets are Run properties; START sets
``started_at``, COMPLETE / FAIL / ABORT set ``ended_at``; a late START does not undo a finished
state. Each input or output dataset becomes a ``Dataset`` (:func:`dataset_id`) and a
``DatasetVersion`` (:func:`version_id`), with ``(Run)-[:USED]->`` inputs and ``(Run)-[:PRODUCED]->``
outputs. A DatasetEvent records its dataset. A JobEvent has no node in the graph model; it is
accepted and only logged.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import jsonschema_rs
from referencing import Registry, Resource

from fleetscope.lineage.schema import LineageError, node_key, utc_text
from fleetscope.lineage.writes import Statement

TERMINAL_STATES = ["COMPLETE", "FAIL", "ABORT"]
EVENT_SCHEMA_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"

# Facet container in an event -> the base facet definition its facets extend.
_CONTAINER_BASES = {
    "run": "RunFacet",
    "job": "JobFacet",
    "dataset": "DatasetFacet",
    "input": "InputDatasetFacet",
    "output": "OutputDatasetFacet",
}


class InvalidEvent(LineageError):
    """An event that is not valid OpenLineage; the message says where and why."""


@dataclass(frozen=True)
class _Schemas:
    events: dict[str, jsonschema.protocols.Validator]
    facets: dict[tuple[str, str], jsonschema.protocols.Validator]
    #: The same schemas compiled by ``jsonschema-rs``: a valid event (the common case) is confirmed
    #: in microseconds; the ``jsonschema`` validators above only explain what is wrong.
    fast_events: dict[str, Any]
    fast_facets: dict[tuple[str, str], Any]


def _is_uuid(text: str) -> bool:
    # The check jsonschema's FormatChecker applies to "uuid" (uuid.UUID parses it, with dashes).
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return all(text[position] == "-" for position in (8, 13, 18, 23))


@cache
def _schemas() -> _Schemas:
    spec = resources.files("fleetscope.lineage") / "spec"
    documents = [json.loads((spec / "OpenLineage.json").read_text())]
    documents += [
        json.loads(f.read_text())
        for f in sorted((spec / "facets").iterdir(), key=lambda p: p.name)
        if f.name.endswith(".json")
    ]
    registry: Registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in documents
    )
    validator_class = jsonschema.validators.validator_for(documents[0])
    # jsonschema checks no "format" by default. The run id's "uuid" is checked because consumers
    # key runs on it (Marquez stores it as a UUID); "date-time" is left to validate_event, which
    # parses eventTime itself, and "uri" would need an optional package and would refuse producers
    # that send bare names.
    formats = jsonschema.FormatChecker(formats=("uuid",))
    events = {
        kind: validator_class(
            {"$ref": f"{EVENT_SCHEMA_ID}#/$defs/{kind}"}, registry=registry, format_checker=formats
        )
        for kind in ("RunEvent", "DatasetEvent", "JobEvent")
    }
    fast_registry = jsonschema_rs.Registry([(doc["$id"], doc) for doc in documents])
    # The same formats as above: "uuid" checked alike, the others accepted.
    fast_formats = {"uuid": _is_uuid, "uri": lambda _: True, "date-time": lambda _: True}

    def fast(schema: dict[str, Any]) -> Any:
        return jsonschema_rs.validator_for(
            schema, registry=fast_registry, validate_formats=True, formats=fast_formats
        )

    fast_events = {kind: fast({"$ref": f"{EVENT_SCHEMA_ID}#/$defs/{kind}"}) for kind in events}
    facets: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    fast_facets: dict[tuple[str, str], Any] = {}
    bases = {f"{EVENT_SCHEMA_ID}#/$defs/{base}": kind for kind, base in _CONTAINER_BASES.items()}
    for doc in documents[1:]:
        for key, prop in doc.get("properties", {}).items():
            pointer = prop.get("$ref", "")
            definition = doc["$defs"].get(pointer.rsplit("/", 1)[-1], {})
            refs = [part.get("$ref") for part in definition.get("allOf", [])]
            for ref in refs:
                if ref in bases:
                    schema = {"$ref": doc["$id"] + pointer}
                    facets[(bases[ref], key)] = validator_class(schema, registry=registry)
                    fast_facets[(bases[ref], key)] = fast(schema)
    return _Schemas(events, facets, fast_events, fast_facets)


@dataclass(frozen=True)
class SetAside:
    """A facet left out of an event because it does not match its schema (an older or newer shape
    of a standard facet): the rest of the event is applied, and the audit record keeps the facet
    and this reason.

    Attributes:
        path: where it was, e.g. ``inputs[0].facets.dataQualityMetrics``.
        reason: the schema's complaint.
    """

    path: str
    reason: str


def _check_facets(kind: str, where: str, facets: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(facets, dict):
        return
    schemas = _schemas()
    for key, value in facets.items():
        validator = schemas.facets.get((kind, key))
        if validator is None or (isinstance(value, dict) and value.get("_deleted") is True):
            continue
        if schemas.fast_facets[(kind, key)].is_valid(value):
            continue
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            path = "/".join(str(part) for part in error.absolute_path)
            yield key, f"{where}.{key}{'/' + path if path else ''}: {error.message}"


def validate_event(event: Any) -> list[SetAside]:
    """Check an event against the OpenLineage spec, and each standard facet against its schema.

    A facet that does not match its schema is removed from ``event`` (see :class:`SetAside`); the
    event itself must be valid.

    Args:
        event: the decoded JSON document; facets that fail are removed from it in place.

    Returns:
        The facets set aside, in document order.

    Raises:
        InvalidEvent: the event does not match the spec, with the JSON path, or a RunEvent's
            ``eventTime`` is not ISO-8601.
    """
    # The spec's top level is oneOf(RunEvent, DatasetEvent, JobEvent); checking the one the event's
    # shape names gives a precise reason instead of "not valid under any of the given schemas".
    kind = "RunEvent" if "run" in event else "DatasetEvent" if "dataset" in event else "JobEvent"
    schemas = _schemas()
    valid = schemas.fast_events[kind].is_valid(event)
    error = None if valid else jsonschema.exceptions.best_match(schemas.events[kind].iter_errors(event))
    if error is not None:
        path = "/".join(str(part) for part in error.absolute_path) or "(event)"
        raise InvalidEvent(f"{kind} {path}: {error.message}")
    containers: list[tuple[str, str, Any]] = []
    if "run" in event:
        containers.append(("run", "run.facets", event["run"].get("facets")))
    if "job" in event:
        containers.append(("job", "job.facets", event["job"].get("facets")))
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for index, dataset in enumerate(event.get(side) or []):
            containers.append(("dataset", f"{side}[{index}].facets", dataset.get("facets")))
            kind = "input" if side == "inputs" else "output"
            containers.append((kind, f"{side}[{index}].{extra}", dataset.get(extra)))
    if "dataset" in event:
        containers.append(("dataset", "dataset.facets", event["dataset"].get("facets")))
    if "run" in event:
        _event_time(event)  # the schema leaves "date-time" unchecked; the graph stores this time
    set_aside: list[SetAside] = []
    for kind, where, facets in containers:
        for key, reason in list(_check_facets(kind, where, facets)):
            del facets[key]
            set_aside.append(SetAside(f"{where}.{key}", reason))
    return set_aside


def parse_event(raw: str | bytes) -> tuple[dict[str, Any], list[SetAside]]:
    """Decode and validate one event.

    Returns:
        The event (without the facets set aside) and the facets set aside.

    Raises:
        InvalidEvent: not UTF-8, not JSON, nested too deep, not an object, or not valid OpenLineage.
    """
    try:
        event = json.loads(raw)
    except RecursionError:
        raise InvalidEvent("not JSON this fleetscope can read: nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event is a JSON object, got {type(event).__name__}")
    try:
        return event, validate_event(event)
    except RecursionError:
        raise InvalidEvent("nested too deep to validate") from None


def facet_property(prefix: str, name: str) -> str:
    """The property that holds facet ``name``: ``{prefix}{name}`` with every character but ASCII
    letters and digits written ``_xx`` (hex), so any facet name is a plain identifier that every
    engine takes as a map key (``spark.logicalPlan`` is ``facet_spark_2elogicalPlan``)."""
    return prefix + "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)


def _facet_props(prefix: str, facets: Any) -> dict[str, str]:
    """Facets as one property each (:func:`facet_property`) holding the facet's JSON text, so
    ``SET n += `` merges them by name: a facet an event leaves out keeps its earlier value."""
    if not isinstance(facets, dict):
        return {}
    return {
        facet_property(prefix, name): json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        for name, value in facets.items()
    }


def _escape(text: str, chars: str) -> str:
    text = text.replace("%", "%25")
    for char in chars:
        text = text.replace(char, f"%{ord(char):02X}")
    return text


def dataset_id(namespace: str, name: str) -> str:
    """A dataset's id: ``namespace|name``, with ``%`` and ``|`` percent-escaped in the namespace so
    that no two (namespace, name) pairs share an id (``kafka://broker:9092`` + ``orders`` and
    ``kafka://broker`` + ``9092:orders`` are two datasets)."""
    return f"{_escape(namespace, '|')}|{name}"


def version_id(dataset: str, version: str | None) -> str:
    """A dataset version's id: ``DATASET@VERSION`` (``%`` and ``@`` escaped in the version, so the
    last ``@`` splits it), or ``DATASET@unversioned`` when the event names no version (a version
    that is literally ``unversioned`` is written ``%75nversioned``)."""
    if not version:
        return f"{dataset}@unversioned"
    escaped = _escape(version, "@")
    return f"{dataset}@{'%75' + escaped[1:] if escaped == 'unversioned' else escaped}"


def _refs(node_id: str) -> dict[str, str]:
    return {"k": node_key(node_id), "i": node_id}


def _dataset(entry: dict[str, Any], edge_facets: str) -> dict[str, Any]:
    facets = entry.get("facets") or {}
    version = (facets.get("version") or {}).get("datasetVersion")
    ds = dataset_id(entry["namespace"], entry["name"])
    dv = version_id(ds, version)
    aliases: dict[str, dict[str, str]] = {}
    for alias in (facets.get("symlinks") or {}).get("identifiers") or []:
        if isinstance(alias, dict) and alias.get("namespace") and alias.get("name"):
            alias_id = dataset_id(str(alias["namespace"]), str(alias["name"]))
            aliases[alias_id] = {
                **_refs(alias_id),
                "name": str(alias["name"]),
                "namespace": str(alias["namespace"]),
            }
    owners = {
        str(owner["name"]): _refs(str(owner["name"]))
        for owner in (facets.get("ownership") or {}).get("owners") or []
        if isinstance(owner, dict) and owner.get("name")
    }
    return {
        "dk": node_key(ds),
        "did": ds,
        "vk": node_key(dv),
        "vid": dv,
        "twin": node_key(version_id(ds, None)) if version else None,
        "name": entry["name"],
        "namespace": entry["namespace"],
        "version": version,
        "facets": _facet_props("facet_", facets),
        "edge": _facet_props("facet_", entry.get(edge_facets)),
        "aliases": list(aliases.values()),
        "owners": list(owners.values()),
    }


def _datasets(entries: list[dict[str, Any]], edge_facets: str) -> list[dict[str, Any]]:
    """The rows of an event's inputs or outputs, one per dataset version: an event that names one
    version twice gets one row with both entries' facets merged in order, and its aliases and
    owners together. In a list that names one node twice, FalkorDB's ``MERGE`` may set the later
    entry's facets on a relationship it then drops as a duplicate; one row each leaves nothing to
    the engine's order."""
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        row = _dataset(entry, edge_facets)
        seen = out.setdefault(row["vk"], row)
        if seen is not row:
            seen["facets"].update(row["facets"])
            seen["edge"].update(row["edge"])
            for part in ("aliases", "owners"):
                keys = {ref["k"] for ref in seen[part]}
                seen[part] += [ref for ref in row[part] if ref["k"] not in keys]
    return list(out.values())


_MERGE_DATASET = (
    "MERGE (ds:Dataset {{key: d.dk}}) ON CREATE SET ds.id = d.did, ds.created_at = {now}, ds.name = d.name, "
    "ds.namespace = d.namespace "
    "MERGE (v:DatasetVersion {{key: d.vk}}) ON CREATE SET v.id = d.vid, v.created_at = {now} "
    "SET v.name = d.name, v.namespace = d.namespace, v.version = d.version, v += d.facets "
    "MERGE (v)-[:VERSION_OF]->(ds) "
    "FOREACH (a IN d.aliases | MERGE (x:Dataset {{key: a.k}}) ON CREATE SET x.id = a.i, "
    "x.created_at = {now}, x.name = a.name, x.namespace = a.namespace MERGE (ds)-[:ALIAS_OF]->(x)) "
    "FOREACH (o IN d.owners | MERGE (p:Person {{key: o.k}}) ON CREATE SET p.id = o.i, "
    "p.created_at = {now} MERGE (ds)-[:OWNED_BY]->(p)){tail}"
)

_USED = " MERGE (n)-[used:USED]->(v) SET used += d.edge"
_PRODUCED = " MERGE (n)-[made:PRODUCED]->(v) SET made += d.edge"

# Every RunEvent is one row of ``$events``: a single event and a batch are the same statement.
_RUN_EVENTS = f"""
UNWIND $events AS e
MERGE (n:Run {{key: e.key}})
ON CREATE SET n.id = e.id, n.created_at = e.now
SET n.job_namespace = e.job_namespace, n.job_name = e.job_name,
    n.state = CASE WHEN n.state IN $terminal AND NOT e.state IN $terminal THEN n.state ELSE e.state END,
    n.started_at = coalesce(n.started_at, e.started_at),
    n.ended_at = coalesce(e.ended_at, n.ended_at),
    n.event_digests = CASE WHEN e.digest IN coalesce(n.event_digests, []) THEN n.event_digests
                      ELSE coalesce(n.event_digests, []) + [e.digest] END,
    n += e.facets
FOREACH (p IN e.parents | MERGE (r:Run {{key: p.k}}) ON CREATE SET r.id = p.i, r.created_at = e.now,
    r.job_namespace = p.job_namespace, r.job_name = p.job_name MERGE (n)-[:CHILD_OF]->(r))
FOREACH (d IN e.inputs | {_MERGE_DATASET.format(now="e.now", tail=_USED)})
FOREACH (d IN e.outputs | {_MERGE_DATASET.format(now="e.now", tail=_PRODUCED)})
WITH n, e
UNWIND e.twins AS twin
MATCH (n)-[p:PRODUCED]->(u:DatasetVersion {{key: twin}})
DELETE p
WITH DISTINCT u
OPTIONAL MATCH (u)-[r]-()
WHERE type(r) <> 'VERSION_OF'
WITH u, count(r) AS uses
FOREACH (x IN CASE WHEN uses = 0 THEN [u] ELSE [] END | DETACH DELETE x)
"""

_DATASET_EVENT = f"""
UNWIND [$dataset] AS d
{_MERGE_DATASET.format(now="$now", tail="")}
SET v.event_digests = CASE WHEN $digest IN coalesce(v.event_digests, []) THEN v.event_digests
                      ELSE coalesce(v.event_digests, []) + [$digest] END
RETURN v.id AS id
"""


def event_digest(event: dict[str, Any]) -> str:
    """SHA-256 (hex) of an event's canonical JSON: the same event sent twice has one digest."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def event_target(event: dict[str, Any]) -> tuple[str, str] | None:
    """The node whose ``event_digests`` records that an event was applied: ``(label, key)``, or
    None for a JobEvent (it writes nothing)."""
    if "run" in event:
        return "Run", node_key(str(event["run"]["runId"]).lower())
    if "dataset" in event:
        entry = event["dataset"]
        version = ((entry.get("facets") or {}).get("version") or {}).get("datasetVersion")
        return "DatasetVersion", node_key(version_id(dataset_id(entry["namespace"], entry["name"]), version))
    return None


def run_event_row(event: dict[str, Any], now: str) -> dict[str, Any] | None:
    """The row of :func:`run_events_statement` that writes a validated RunEvent, or None for any
    other kind of event.

    Args:
        event: an event that passed :func:`validate_event`.
        now: ``created_at`` for nodes the event creates (its audit record's time).

    Raises:
        InvalidEvent: an ``eventTime`` that is not ISO-8601.
    """
    if "run" not in event:
        return None
    at = _event_time(event)
    state = str(event.get("eventType") or "OTHER")
    run_id = str(event["run"]["runId"]).lower()
    run_facets = event["run"].get("facets") or {}
    parents = []
    parent = run_facets.get("parent") if isinstance(run_facets, dict) else None
    if isinstance(parent, dict) and isinstance(parent.get("run"), dict) and parent["run"].get("runId"):
        job: dict[str, Any] = parent["job"] if isinstance(parent.get("job"), dict) else {}
        parents.append(
            {
                **_refs(str(parent["run"]["runId"]).lower()),
                "job_namespace": job.get("namespace"),
                "job_name": job.get("name"),
            }
        )
    outputs = _datasets(event.get("outputs") or [], "outputFacets")
    return {
        "key": node_key(run_id),
        "id": run_id,
        "now": now,
        "digest": event_digest(event),
        "job_namespace": event["job"]["namespace"],
        "job_name": event["job"]["name"],
        "state": state,
        "started_at": at if state == "START" else None,
        "ended_at": at if state in TERMINAL_STATES else None,
        "facets": {
            **_facet_props("facet_", run_facets),
            **_facet_props("job_facet_", event["job"].get("facets")),
        },
        "parents": parents,
        "inputs": _datasets(event.get("inputs") or [], "inputFacets"),
        "outputs": outputs,
        "twins": list(dict.fromkeys(d["twin"] for d in outputs if d["twin"])),
    }


def _event_time(event: dict[str, Any]) -> str:
    try:
        return utc_text(event["eventTime"])
    except LineageError as exc:
        raise InvalidEvent(f"eventTime: {exc}") from exc


def run_events_statement(rows: list[dict[str, Any]]) -> Statement:
    """One statement that writes RunEvents (rows of :func:`run_event_row`), one ``UNWIND`` row each.

    A statement of several rows gives the graph that applying them one by one gives only when no
    two of them conflict (:func:`row_touches`): FalkorDB evaluates a ``SET`` for every row before
    it applies any, so two rows that read and write the same node see its state from before both.
    """
    return Statement(_RUN_EVENTS.strip(), {"events": rows, "terminal": TERMINAL_STATES})


#: A node a row reads as well as writes: no other row of the same statement may touch it.
ALONE = None
#: What every row touches, so that a row that must be its statement's only row (it names one dataset
#: more than once) can hold it :data:`ALONE`; rows that need not hold it share it.
WHOLE_STATEMENT = ("Statement", "")


def row_touches(row: dict[str, Any]) -> list[tuple[tuple[str, str], Any]]:
    """The nodes a RunEvent row writes, each as ``((label, key), what)``, for batching.

    ``what`` is :data:`ALONE` for a node the row reads as well as writes (its run: state,
    digests, times; an ``@unversioned`` twin it may delete), and otherwise a hashable summary of
    every value the row writes on it that may differ between rows (``created_at`` and the
    facets): rows whose summaries are equal write the same thing, in any order. Two rows conflict
    when they touch one node and either is :data:`ALONE` or their summaries differ; rows that do
    not conflict give the same graph in one statement or in any order of statements.

    A row that names a dataset's ``@unversioned`` twin beside a version it moves that twin to (an output
    listed with and without its version) holds :data:`WHOLE_STATEMENT` alone: FalkorDB applies such a
    row's writes in another order beside other rows than alone (found by the randomised batching test:
    the run's ``PRODUCED`` of the twin kept in a statement of two rows, gone in a statement of one).
    """
    now = row["now"]
    alone = bool(set(row["twins"]) & {entry["vk"] for entry in (*row["inputs"], *row["outputs"])})
    out: list[tuple[tuple[str, str], Any]] = [
        (("Run", row["key"]), ALONE),
        (WHOLE_STATEMENT, ALONE if alone else "shared"),
    ]
    out += [(("DatasetVersion", twin), ALONE) for twin in row["twins"]]
    for parent in row["parents"]:
        out.append((("Run", parent["k"]), (now, parent["job_namespace"], parent["job_name"])))
    for entry in (*row["inputs"], *row["outputs"]):
        out.append((("Dataset", entry["dk"]), now))
        out.append((("DatasetVersion", entry["vk"]), (now, tuple(sorted(entry["facets"].items())))))
        out += [(("Dataset", alias["k"]), now) for alias in entry["aliases"]]
        out += [(("Person", owner["k"]), now) for owner in entry["owners"]]
    return out


def event_statement(event: dict[str, Any], now: str) -> Statement | None:
    """Map a validated event onto one write statement.

    Run ids are UUIDs compared without regard to case (stored in lower case). Run and job facets
    are Run properties ``facet_NAME`` and ``job_facet_NAME`` (JSON text), dataset facets are
    DatasetVersion properties ``facet_NAME``, and input or output facets are properties of the
    ``USED`` or ``PRODUCED`` relationship of that run: each merged by name. The ``parent`` facet
    adds ``(Run)-[:CHILD_OF]->(Run)``, ``symlinks`` adds ``(Dataset)-[:ALIAS_OF]->(Dataset)`` and
    ``ownership`` adds ``(Dataset)-[:OWNED_BY]->(Person)``. An output whose version facet arrives
    late moves from its ``@unversioned`` twin to that version (the twin is deleted once nothing
    else uses it).

    Args:
        event: an event that passed :func:`validate_event`.
        now: ``created_at`` for new nodes (the audit record's time).

    Returns:
        The statement, or None for a JobEvent (nothing to write).

    Raises:
        InvalidEvent: an ``eventTime`` that is not ISO-8601.
    """
    row = run_event_row(event, now)
    if row is not None:
        return run_events_statement([row])
    if "dataset" in event:
        return Statement(
            _DATASET_EVENT.strip(),
            {"dataset": _dataset(event["dataset"], "facets"), "now": now, "digest": event_digest(event)},
        )
    return None
