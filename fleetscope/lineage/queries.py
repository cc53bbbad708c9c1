"""The audit query pack: named, parameterised, documented queries over the lineage graph.

Each query is either one read-only Cypher statement or a *walk*: a breadth-first traversal that
follows a fixed set of directed hops, one bound-parameter Cypher statement per hop and level. Walks
answer "everything upstream" and "everything downstream" questions, whose paths change direction
(``(Run)-[:PRODUCED]->(Model)`` is walked backwards upstream, ``(Run)-[:USED]->`` forwards), which
one bounded variable-length pattern cannot express in the Cypher subset Neo4j 5 and FalkorDB share.
A walk row is the node's first discovery (smallest depth; ties go to the smallest parent).

Every query returns rows in a fixed order, so a row list is a stable answer to test and export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetscope.lineage.schema import ENTITIES, LineageError, node_key, utc_text
from fleetscope.lineage.store.base import GraphStore, Row
from fleetscope.lineage.writes import HARDWARE_LAYERS


@dataclass(frozen=True)
class Param:
    """One query parameter: ``kind`` is ``text``, ``time`` (ISO-8601, normalised to UTC) or
    ``int``; ``default`` None with ``required`` False means "not given"."""

    name: str
    help: str
    kind: str = "text"
    required: bool = True
    default: Any = None


@dataclass(frozen=True)
class Hop:
    """A directed step of a walk: from ``source`` along ``rel`` (forwards when ``forward``) to
    ``target``."""

    source: str
    rel: str
    target: str
    forward: bool = True
    #: Followed only from the node the walk starts at (a dataset's provenance is that of all its
    #: versions, but a model's is only that of the versions its runs used).
    start_only: bool = False

    def cypher(self) -> str:
        arrow = f"-[:{self.rel}]->" if self.forward else f"<-[:{self.rel}]-"
        return (
            f"UNWIND $keys AS k MATCH (a:{self.source} {{key: k}}){arrow}(b:{self.target}) "
            "RETURN a.key AS src, b.key AS dst, b.id AS dst_id"
        )


@dataclass(frozen=True)
class AuditQuery:
    """A named audit query.

    Attributes:
        name: the name ``fleetscope lineage audit NAME`` takes.
        description: what it answers, for the ``queries`` listing.
        columns: the row columns, in order.
        params: its parameters.
        cypher: the statement, for a Cypher query.
        hops: the walk's hops, for a walk; the start node's label is the ``label`` parameter.
    """

    name: str
    description: str
    columns: tuple[str, ...]
    params: tuple[Param, ...] = ()
    cypher: str = ""
    hops: tuple[Hop, ...] = field(default=())
    #: A query computed in Python over walks (see :data:`_CUSTOM`).
    custom: str = ""


def _hops(*specs: tuple[Any, ...]) -> tuple[Hop, ...]:
    out: list[Hop] = []
    for source, rel, targets, forward, *start_only in specs:
        for target in (targets,) if isinstance(targets, str) else targets:
            out.append(Hop(source, rel, target, forward, *start_only))
    return tuple(out)


UPSTREAM = _hops(
    ("Deployment", "SERVES", "Model", True),
    ("Model", "DERIVED_FROM", "Model", True),
    ("Model", "PRODUCED", "Run", False),
    ("Checkpoint", "PRODUCED", "Run", False),
    ("DatasetVersion", "PRODUCED", "Run", False),
    ("Run", "USED", ("DatasetVersion", "Config", "Code", "Checkpoint"), True),
    ("Run", "RAN_ON", ("Host", "GPU"), True),
    ("Run", "CHILD_OF", "Run", True),
    ("DatasetVersion", "VERSION_OF", "Dataset", True),
    ("Dataset", "VERSION_OF", "DatasetVersion", False, True),
    ("Dataset", "ALIAS_OF", "Dataset", True),
    ("Dataset", "OWNED_BY", "Person", True),
    ("Model", "EVALUATED", "Evaluation", False),
    ("Evaluation", "USED", "DatasetVersion", True),
    ("Model", "APPROVED", "Approval", False),
    ("Deployment", "APPROVED", "Approval", False),
    ("Approval", "GAVE", "Person", False),
)

DOWNSTREAM = _hops(
    ("Dataset", "VERSION_OF", "DatasetVersion", False),
    ("DatasetVersion", "USED", ("Run", "Evaluation"), False),
    ("Run", "PRODUCED", ("Checkpoint", "Model", "DatasetVersion"), True),
    ("Checkpoint", "USED", "Run", False),
    ("Model", "DERIVED_FROM", "Model", False),
    ("Model", "SERVES", "Deployment", False),
    ("Run", "CHILD_OF", "Run", False),
    ("Dataset", "ALIAS_OF", "Dataset", False),
)

_WALK_COLUMNS = ("depth", "label", "id", "relation", "from_label", "from_id")
_MAX_DEPTH = Param(
    "max_depth", "how many hops to follow at most (default: every one; a cut is reported)", "int", False
)

QUERIES: dict[str, AuditQuery] = {
    q.name: q
    for q in (
        AuditQuery(
            "provenance",
            "Full upstream provenance of any node (a model, deployment, run, dataset or dataset "
            "version ...): the runs that produced it and the checkpoints they resumed from, their "
            "data, configs, code, hosts and GPUs, parent runs, base models of fine-tunes, "
            "evaluations and their data, approvals and who gave them.",
            _WALK_COLUMNS,
            (
                Param("id", "id of the node to start from"),
                Param("label", "the node's label, if its id is used by more than one", required=False),
                _MAX_DEPTH,
            ),
            hops=UPSTREAM,
        ),
        AuditQuery(
            "impact",
            "Downstream impact of a dataset version (or of every version of a Dataset): every run, "
            "checkpoint, derived dataset, model (through fine-tunes too), deployment and evaluation "
            "it reaches.",
            _WALK_COLUMNS,
            (
                Param("id", "id of the dataset version"),
                Param("label", "the node's label, if its id is used by more than one", required=False),
                _MAX_DEPTH,
            ),
            hops=DOWNSTREAM,
        ),
        AuditQuery(
            "unapproved_deployments",
            "Deployments with no approval: neither the deployment nor the model it serves has an "
            "Approval whose decision is 'approved'.",
            ("deployment", "endpoint", "model", "started_at", "ended_at"),
            cypher="""
MATCH (d:Deployment)-[:SERVES]->(m:Model)
OPTIONAL MATCH (a:Approval)-[:APPROVED]->(d) WHERE a.decision = 'approved'
OPTIONAL MATCH (b:Approval)-[:APPROVED]->(m) WHERE b.decision = 'approved'
WITH d, m, count(a) + count(b) AS approvals
WHERE approvals = 0
RETURN d.id AS deployment, d.endpoint AS endpoint, m.id AS model, d.started_at AS started_at,
       d.ended_at AS ended_at
ORDER BY deployment, model""",
        ),
        AuditQuery(
            "unevaluated_models",
            "Deployed models without a finished evaluation on a required benchmark.",
            ("model", "name", "version", "deployment", "endpoint"),
            (Param("benchmark", "the required benchmark"),),
            cypher="""
MATCH (d:Deployment)-[:SERVES]->(m:Model)
OPTIONAL MATCH (e:Evaluation)-[:EVALUATED]->(m)
WHERE e.benchmark = $benchmark AND e.finished_at IS NOT NULL
WITH d, m, count(e) AS evaluations
WHERE evaluations = 0
RETURN m.id AS model, m.name AS name, m.version AS version, d.id AS deployment, d.endpoint AS endpoint
ORDER BY model, deployment""",
        ),
        AuditQuery(
            "approved_before_evaluation",
            "Approvals given before an evaluation of the approved model finished (or of the model a "
            "deployment serves), and approvals of models with no evaluation at all.",
            ("approval", "approved_at", "given_by", "model", "evaluation", "benchmark", "finished_at"),
            cypher="""
MATCH (a:Approval)-[:APPROVED]->(x)-[:SERVES*0..1]->(m:Model)
WHERE a.decision = 'approved'
OPTIONAL MATCH (e:Evaluation)-[:EVALUATED]->(m)
WITH a, m, e
WHERE e IS NULL OR e.finished_at IS NULL OR a.approved_at < e.finished_at
OPTIONAL MATCH (p:Person)-[:GAVE]->(a)
RETURN a.id AS approval, a.approved_at AS approved_at, p.id AS given_by, m.id AS model,
       e.id AS evaluation, e.benchmark AS benchmark, e.finished_at AS finished_at
ORDER BY approval, model, evaluation""",
        ),
        AuditQuery(
            "restricted_data_models",
            "Models trained on data flagged as containing personal data or under a restricted "
            "licence, through any number of hand-offs: derived datasets (a run produced a version "
            "another run used), resumed checkpoints, and fine-tunes of the models trained on it.",
            ("model", "trained_model", "run", "dataset_version", "dataset", "personal_data", "licence"),
            custom="restricted",
        ),
        AuditQuery(
            "served_at",
            "Which model version served endpoint E at time T.",
            ("deployment", "model", "name", "version", "started_at", "ended_at"),
            (Param("endpoint", "the endpoint"), Param("at", "the instant (ISO-8601)", "time")),
            cypher="""
MATCH (d:Deployment {endpoint: $endpoint})-[:SERVES]->(m:Model)
WHERE d.started_at <= $at AND (d.ended_at IS NULL OR d.ended_at > $at)
RETURN d.id AS deployment, m.id AS model, m.name AS name, m.version AS version,
       d.started_at AS started_at, d.ended_at AS ended_at
ORDER BY deployment, model""",
        ),
        AuditQuery(
            "incident_exposure",
            "Runs, and the models and checkpoints they produced, that ran on a GPU while a hardware "
            "incident on that GPU was open (silent-data-corruption risk). Without an incident id, "
            "every incident in a hardware layer.",
            ("incident", "layer", "gpu", "run", "run_started_at", "run_ended_at", "produced"),
            (Param("incident", "incident id", required=False),),
            cypher="""
MATCH (i:Incident)-[:ON]->(g:GPU)<-[:RAN_ON]-(r:Run)
WHERE ($incident IS NULL OR i.id = $incident) AND ($incident IS NOT NULL OR i.layer IN $layers)
  AND r.started_at <= coalesce(i.ended_at, $forever) AND coalesce(r.ended_at, $forever) >= i.started_at
OPTIONAL MATCH (r)-[:PRODUCED]->(x)
WHERE x:Model OR x:Checkpoint
RETURN DISTINCT i.id AS incident, i.layer AS layer, g.id AS gpu, r.id AS run,
       r.started_at AS run_started_at, r.ended_at AS run_ended_at, x.id AS produced
ORDER BY incident, gpu, run, produced""",
        ),
    )
}

# Bound alongside the caller's parameters by the queries that use them.
_CONSTANTS = {"layers": list(HARDWARE_LAYERS), "forever": "9999-12-31T23:59:59.999999Z"}


def bind_params(query: AuditQuery, given: dict[str, Any]) -> dict[str, Any]:
    """Check and convert the caller's parameters.

    Args:
        query: the audit query.
        given: name to value (text from the command line is converted by kind).

    Returns:
        The parameters to bind.

    Raises:
        LineageError: a missing, unknown or malformed parameter.
    """
    known = {p.name: p for p in query.params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise LineageError(
            f"{query.name} has no parameter {', '.join(unknown)} (has: {', '.join(known) or 'none'})"
        )
    bound: dict[str, Any] = {}
    for param in query.params:
        value = given.get(param.name, param.default)
        if value is None:
            if param.required:
                raise LineageError(f"{query.name} needs --param {param.name}=... ({param.help})")
        elif param.kind == "time":
            value = utc_text(value)
        elif param.kind == "int":
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise LineageError(f"{param.name} must be an integer, got {value!r}") from None
        else:
            value = str(value)
        bound[param.name] = value
    return bound


class Rows(list[Row]):
    """Rows of an audit query, with ``notes``: what the query did that the rows cannot show (a
    walk that stopped at ``max_depth`` says so, and where)."""

    def __init__(self, rows: list[Row], notes: list[str] | None = None) -> None:
        super().__init__(rows)
        self.notes: list[str] = list(notes or [])


Read = Callable[[str, dict[str, Any]], list[Row]]


def _find_start(read: Read, query: AuditQuery, params: dict[str, Any]) -> str:
    key = node_key(params["id"])
    labels = [params["label"]] if params.get("label") else list(ENTITIES)
    if params.get("label") and params["label"] not in ENTITIES:
        raise LineageError(f"unknown label {params['label']!r} (known: {', '.join(ENTITIES)})")
    found = [
        label for label in labels if read(f"MATCH (n:{label} {{key: $key}}) RETURN n.id AS id", {"key": key})
    ]
    if not found:
        where = f"no {params['label']}" if params.get("label") else "nothing"
        raise LineageError(f"{query.name}: {where} with id {params['id']!r} in the graph")
    if len(found) > 1:
        raise LineageError(
            f"{query.name}: id {params['id']!r} names a {', a '.join(found)}: add --param label=..."
        )
    return found[0]


def _walk(
    read: Callable[[str, dict[str, Any]], list[Row]], query: AuditQuery, params: dict[str, Any]
) -> Rows:
    start_label = _find_start(read, query, params)
    return _walks(read, query, [(start_label, params["id"])], params.get("max_depth"))[0]


def _walks(read: Read, query: AuditQuery, starts: list[tuple[str, str]], max_depth: int | None) -> list[Rows]:
    """Breadth-first walks along ``query.hops`` from each ``(label, id)`` start, all at once: each
    level reads every hop once for the frontiers of every walk together, then each walk takes the
    rows of its own frontier. A node's row names the smallest ``(relation, label, id)`` it was
    reached from at its depth, so the rows of a walk do not depend on the other walks."""
    ids: dict[str, str] = {}
    seen: list[set[tuple[str, str]]] = []
    frontiers: list[dict[str, list[str]]] = []
    for label, start_id in starts:
        key = node_key(start_id)
        ids[key] = start_id
        seen.append({(label, key)})
        frontiers.append({label: [key]})
    walks = [Rows([]) for _ in starts]
    depth = 0

    def level() -> list[dict[tuple[str, str], list[Row]]]:
        """Per hop, the rows leading out of any walk's frontier, by the node they leave."""
        out = []
        for hop in query.hops:
            keys = sorted({key for frontier in frontiers for key in frontier.get(hop.source, [])})
            rows: dict[tuple[str, str], list[Row]] = {}
            if keys and not (hop.start_only and depth > 0):
                for row in read(hop.cypher(), {"keys": keys}):
                    rows.setdefault((hop.source, row["src"]), []).append(row)
            out.append(rows)
        return out

    while any(frontiers):
        hops = level()
        if max_depth is not None and depth >= max_depth:
            # That level was read only to say whether a walk was cut short.
            for walk, frontier, done in zip(walks, frontiers, seen, strict=True):
                more = sum(
                    1
                    for hop, rows in zip(query.hops, hops, strict=True)
                    for key in frontier.get(hop.source, [])
                    for row in rows.get((hop.source, key), [])
                    if (hop.target, row["dst"]) not in done
                )
                if more:
                    walk.notes.append(
                        f"stopped at max_depth={max_depth}: {more} relationship(s) lead further from "
                        f"the {sum(1 for r in walk if r['depth'] == depth)} node(s) at depth "
                        f"{depth}; raise max_depth or leave it out to follow every hop"
                    )
            break
        depth += 1
        for index, (walk, frontier, done) in enumerate(zip(walks, frontiers, seen, strict=True)):
            reached: dict[tuple[str, str], tuple[str, str, str]] = {}
            for hop, rows in zip(query.hops, hops, strict=True):
                for key in frontier.get(hop.source, []):
                    for row in rows.get((hop.source, key), []):
                        node = (hop.target, row["dst"])
                        if node in done:
                            continue
                        ids[row["dst"]] = row["dst_id"]
                        parent = (hop.rel, hop.source, ids[row["src"]])
                        if node not in reached or parent < reached[node]:
                            reached[node] = parent
            frontiers[index] = {}
            order = sorted(reached.items(), key=lambda item: (item[0][0], ids[item[0][1]]))
            for (label, key), (rel, source, src) in order:
                done.add((label, key))
                frontiers[index].setdefault(label, []).append(key)
                walk.append(
                    {
                        "depth": depth,
                        "label": label,
                        "id": ids[key],
                        "relation": rel,
                        "from_label": source,
                        "from_id": src,
                    }
                )
    return walks


_FLAGGED = """
MATCH (v:DatasetVersion)
OPTIONAL MATCH (v)-[:VERSION_OF]->(ds:Dataset)
WITH v, ds,
     coalesce(v.contains_personal_data, false) OR coalesce(ds.contains_personal_data, false) AS personal
WHERE personal OR coalesce(ds.licence_restricted, false)
RETURN v.id AS dataset_version, ds.id AS dataset, personal AS personal_data,
       CASE WHEN coalesce(ds.licence_restricted, false) THEN ds.licence ELSE null END AS licence
"""


def _restricted_data_models(read: Read, params: dict[str, Any]) -> Rows:
    """Walk downstream (every depth) from each flagged dataset version; each model reached is a row,
    with the model a run trained (``trained_model``, the end of the fine-tune chain) and that run."""
    out: dict[tuple[str, str, str, str], Row] = {}
    flagged_versions = read(_FLAGGED.strip(), {})
    starts = [("DatasetVersion", flagged["dataset_version"]) for flagged in flagged_versions]
    for flagged, walk in zip(flagged_versions, _walks(read, QUERIES["impact"], starts, None), strict=True):
        found = {(row["label"], row["id"]): row for row in walk}
        for row in walk:
            if row["label"] != "Model":
                continue
            trained = row
            while trained["relation"] == "DERIVED_FROM":
                trained = found[("Model", trained["from_id"])]
            key = (row["id"], trained["id"], trained["from_id"], flagged["dataset_version"])
            out[key] = {
                "model": row["id"],
                "trained_model": trained["id"],
                "run": trained["from_id"],
                **flagged,
            }
    return Rows([out[key] for key in sorted(out)])


_CUSTOM: dict[str, Callable[[Read, dict[str, Any]], Rows]] = {"restricted": _restricted_data_models}


def run_audit(store: GraphStore, name: str, given: dict[str, Any] | None = None) -> list[Row]:
    """Run a named audit query in a read-only session.

    Args:
        store: the graph.
        name: a key of :data:`QUERIES`.
        given: its parameters.

    Returns:
        Rows (dicts keyed by the query's ``columns``), in the query's fixed order.

    Raises:
        LineageError: unknown query or bad parameters.
        lineage.store.base.StoreError: the store failed.
    """
    query = QUERIES.get(name)
    if query is None:
        raise LineageError(f"unknown audit query {name!r} (known: {', '.join(QUERIES)})")
    params = bind_params(query, given or {})
    if query.hops:
        return _walk(store.read, query, params)
    if query.custom:
        return _CUSTOM[query.custom](store.read, params)
    rows = store.read(query.cypher.strip(), {**_CONSTANTS, **params})
    return [{column: row.get(column) for column in query.columns} for row in rows]
