"""OpenLineage in: validate an event against the spec, then map it onto the graph in one statement.

Validation uses the OpenLineage JSON schemas shipped in ``lineage/spec`` (Apache-2.0, see
``spec/SOURCES.txt``): the event schema (RunEvent, DatasetEvent, JobEvent) and every standard facet
schema, applied to the facet of that name in the container it belongs to (run, job, dataset, input
or output facets). Custom facets are checked only against the base facet (``_producer`` and
``_schemaURL``), as the spec allows. A facet marked ``_deleted`` is not checked.

Mapping (a RunEvent): ``run.runId`` is the Run id; the job's namespace and name, the event type
(state) and the run and job facets (JSON text) are Run properties; START sets ``started_at``,
COMPLETE / FAIL / ABORT set ``ended_at``; a late START does not undo a finished state. Each input
or output dataset becomes a ``Dataset`` (``namespace:name``) and a ``DatasetVersion``
(``namespace:name@version``, the version from the ``version`` facet, else ``unversioned``), with
``(Run)-[:USED]->`` inputs and ``(Run)-[:PRODUCED]->`` outputs. A DatasetEvent records its dataset.
A JobEvent has no node in the graph model; it is accepted and only logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from fleetscope.lineage.schema import LineageError, utc_text
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
    # key runs on it (Marquez stores it as a UUID); "date-time" is left to event_statement, which
    # parses eventTime itself, and "uri" would need an optional package and would refuse producers
    # that send bare names.
    formats = jsonschema.FormatChecker(formats=("uuid",))
    events = {
        kind: validator_class(
            {"$ref": f"{EVENT_SCHEMA_ID}#/$defs/{kind}"}, registry=registry, format_checker=formats
        )
        for kind in ("RunEvent", "DatasetEvent", "JobEvent")
    }
    facets: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
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
    return _Schemas(events, facets)


def _facet_errors(kind: str, where: str, facets: Any) -> Iterator[str]:
    if not isinstance(facets, dict):
        return
    validators = _schemas().facets
    for key, value in facets.items():
        validator = validators.get((kind, key))
        if validator is None or (isinstance(value, dict) and value.get("_deleted") is True):
            continue
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            path = "/".join(str(part) for part in error.absolute_path)
            yield f"{where}.{key}{'/' + path if path else ''}: {error.message}"


def validate_event(event: Any) -> None:
    """Check an event against the OpenLineage spec and the standard facet schemas.

    Args:
        event: the decoded JSON document.

    Raises:
        InvalidEvent: the first problem found, with its JSON path.
    """
    # The spec's top level is oneOf(RunEvent, DatasetEvent, JobEvent); checking the one the event's
    # shape names gives a precise reason instead of "not valid under any of the given schemas".
    kind = "RunEvent" if "run" in event else "DatasetEvent" if "dataset" in event else "JobEvent"
    error = jsonschema.exceptions.best_match(_schemas().events[kind].iter_errors(event))
    if error is not None:
        path = "/".join(str(part) for part in error.absolute_path) or "(event)"
        raise InvalidEvent(f"{kind} {path}: {error.message}")
    problems: list[str] = []
    if "run" in event:
        problems += _facet_errors("run", "run.facets", event["run"].get("facets"))
    if "job" in event:
        problems += _facet_errors("job", "job.facets", event["job"].get("facets"))
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for index, dataset in enumerate(event.get(side) or []):
            problems += _facet_errors("dataset", f"{side}[{index}].facets", dataset.get("facets"))
            kind = "input" if side == "inputs" else "output"
            problems += _facet_errors(kind, f"{side}[{index}].{extra}", dataset.get(extra))
    if "dataset" in event:
        problems += _facet_errors("dataset", "dataset.facets", event["dataset"].get("facets"))
    if problems:
        raise InvalidEvent(problems[0])


def parse_event(raw: str | bytes) -> dict[str, Any]:
    """Decode and validate one event.

    Raises:
        InvalidEvent: not JSON, not an object, or not valid OpenLineage.
    """
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event is a JSON object, got {type(event).__name__}")
    validate_event(event)
    return event


def _facets_text(facets: Any) -> str | None:
    return json.dumps(facets, sort_keys=True, separators=(",", ":")) if facets else None


def _dataset(entry: dict[str, Any]) -> dict[str, Any]:
    facets = entry.get("facets") or {}
    version = (facets.get("version") or {}).get("datasetVersion")
    dataset_id = f"{entry['namespace']}:{entry['name']}"
    return {
        "dataset": dataset_id,
        "id": f"{dataset_id}@{version or 'unversioned'}",
        "name": entry["name"],
        "namespace": entry["namespace"],
        "version": version,
        "facets": _facets_text(facets),
    }


_MERGE_DATASET = (
    "MERGE (ds:Dataset {{id: d.dataset}}) ON CREATE SET ds.created_at = $now, ds.name = d.name, "
    "ds.namespace = d.namespace "
    "MERGE (v:DatasetVersion {{id: d.id}}) ON CREATE SET v.created_at = $now "
    "SET v.name = d.name, v.namespace = d.namespace, v.version = d.version, "
    "v.facets = coalesce(d.facets, v.facets) "
    "MERGE (v)-[:VERSION_OF]->(ds){tail}"
)

_RUN_EVENT = f"""
MERGE (n:Run {{id: $id}})
ON CREATE SET n.created_at = $now
SET n.job_namespace = $job_namespace, n.job_name = $job_name,
    n.state = CASE WHEN n.state IN $terminal AND NOT $state IN $terminal THEN n.state ELSE $state END,
    n.started_at = coalesce(n.started_at, $started_at),
    n.ended_at = coalesce($ended_at, n.ended_at),
    n.facets = coalesce($facets, n.facets),
    n.job_facets = coalesce($job_facets, n.job_facets)
FOREACH (d IN $inputs | {_MERGE_DATASET.format(tail=" MERGE (n)-[:USED]->(v)")})
FOREACH (d IN $outputs | {_MERGE_DATASET.format(tail=" MERGE (n)-[:PRODUCED]->(v)")})
RETURN n.id AS id
"""

_DATASET_EVENT = f"""
UNWIND [$dataset] AS d
{_MERGE_DATASET.format(tail="")}
RETURN v.id AS id
"""


def event_statement(event: dict[str, Any], now: str) -> Statement | None:
    """Map a validated event onto one write statement.

    Args:
        event: an event that passed :func:`validate_event`.
        now: ``created_at`` for new nodes.

    Returns:
        The statement, or None for a JobEvent (nothing to write).

    Raises:
        InvalidEvent: an ``eventTime`` that is not ISO-8601.
    """
    if "run" in event:
        try:
            at = utc_text(event["eventTime"])
        except LineageError as exc:
            raise InvalidEvent(f"eventTime: {exc}") from exc
        state = str(event.get("eventType") or "OTHER")
        params = {
            "id": event["run"]["runId"],
            "now": now,
            "job_namespace": event["job"]["namespace"],
            "job_name": event["job"]["name"],
            "state": state,
            "terminal": TERMINAL_STATES,
            "started_at": at if state == "START" else None,
            "ended_at": at if state in TERMINAL_STATES else None,
            "facets": _facets_text(event["run"].get("facets")),
            "job_facets": _facets_text(event["job"].get("facets")),
            "inputs": [_dataset(entry) for entry in event.get("inputs") or []],
            "outputs": [_dataset(entry) for entry in event.get("outputs") or []],
        }
        return Statement(_RUN_EVENT.strip(), params)
    if "dataset" in event:
        return Statement(_DATASET_EVENT.strip(), {"dataset": _dataset(event["dataset"]), "now": now})
    return None
