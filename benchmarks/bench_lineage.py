"""OpenLineage ingest rate and audit-query latency on the embedded store (FalkorDB, append-only file
with fsync on every write), at graph sizes given on the command line.

Run: ``python -m benchmarks.bench_lineage --nodes 10000 --nodes 100000``
(``--events``, ``--repeats``, ``--query-budget-s``, ``--seed``; ``--data-dir`` keeps the graphs).

For each size a fresh embedded store is filled with a synthetic cluster history of about that many
nodes, in time order: data sets with versions (a few flagged as personal data or under a restricted
licence), configs, code commits, hosts with 8 GPUs each, runs that use three recent data set
versions, a config and a commit, run on one host and four of its GPUs and sometimes resume from an
earlier run's checkpoint; each run saves checkpoints and produces a model, most models fine-tuned
from a recent model; evaluations on benchmark data, approvals given by people, deployments on a
handful of endpoints over time, and hardware incidents on GPUs that runs used. That load is
benchmark set-up and goes in bulk (``UNWIND`` batches of plain ``CREATE``); it is not the product's
write path.

Then ``--events`` OpenLineage RunEvents (START and COMPLETE pairs, two inputs and one output each)
go through :meth:`lineage.Lineage.ingest`, the path of ``fleetscope lineage ingest`` and of the HTTP
endpoint: spec validation, one MERGE statement, one fsynced audit-log append each. Each audit query of
the pack then runs ``--repeats`` times (or until ``--query-budget-s`` is spent) with parameters
drawn at random from the graph, through :func:`fleetscope.lineage.run_audit` in read-only sessions. The table
gives p50 and p95 latency in milliseconds and the mean row count.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleetscope.lineage import QUERIES, AuditLog, Lineage, open_store
from fleetscope.lineage.schema import node_key
from fleetscope.lineage.writes import HARDWARE_LAYERS

BATCH = 5000
EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
RUN_SPACING = timedelta(minutes=7)
ENDPOINTS = [f"endpoint-{i}" for i in range(20)]
BENCHMARKS = ["mmlu", "gsm8k", "humaneval", "toxicity"]


def ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Graph:
    """Node rows by label and relationship rows by (type, source label, target label)."""

    nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rels: dict[tuple[str, str, str], list[tuple[str, str]]] = field(default_factory=dict)

    def node(self, label: str, node_id: str, **props: Any) -> str:
        self.nodes.setdefault(label, []).append({"id": node_id, **props})
        return node_id

    def rel(self, rel: str, src_label: str, src: str, dst_label: str, dst: str) -> None:
        self.rels.setdefault((rel, src_label, dst_label), []).append((src, dst))

    @property
    def node_count(self) -> int:
        return sum(len(rows) for rows in self.nodes.values())

    @property
    def rel_count(self) -> int:
        return sum(len(rows) for rows in self.rels.values())


def build(target: int, rng: random.Random) -> Graph:
    """A synthetic cluster history of about ``target`` nodes (see the module docstring).

    Per run there are about 7.2 nodes (the run, 2 checkpoints, a model, 2 evaluations, half an
    approval, a quarter deployment, shares of data, configs, code, hosts, GPUs, people, incidents).
    """
    g = Graph()
    runs = max(50, int(target / 7.2))
    now = ts(EPOCH)
    people = [
        g.node("Person", f"person-{i}", name=f"P{i}", created_at=now) for i in range(max(5, runs // 100))
    ]
    datasets = max(10, runs // 40)
    versions: list[str] = []
    for d in range(datasets):
        restricted, personal = d % 23 == 0, d % 17 == 0
        g.node("Dataset", f"ds-{d}", name=f"data-{d}", licence="proprietary" if restricted else "cc-by-4.0",
               licence_restricted=restricted, contains_personal_data=personal, created_at=now)  # fmt: skip
        for v in range(4):
            version = g.node(
                "DatasetVersion", f"ds-{d}@v{v}", name=f"data-{d}", version=str(v), created_at=now
            )
            g.rel("VERSION_OF", "DatasetVersion", version, "Dataset", f"ds-{d}")
            versions.append(version)
    # Runs use versions in time order: a run near the start of history uses early versions.
    rng.shuffle(versions)
    eval_versions = versions[: max(4, len(versions) // 50)]
    configs = [
        g.node("Config", f"cfg-{i}", name=f"c{i}.yaml", created_at=now) for i in range(max(5, runs // 20))
    ]
    commits = [
        g.node("Code", f"code-{i}", commit=f"{i:040x}", created_at=now) for i in range(max(5, runs // 10))
    ]
    hosts = [
        g.node("Host", f"host-{i}", hostname=f"node-{i:05d}", created_at=now)
        for i in range(max(2, runs // 60))
    ]
    gpus: dict[str, list[str]] = {}
    for host in hosts:
        gpus[host] = [g.node("GPU", f"{host}-gpu{k}", index=k, host=host, created_at=now) for k in range(8)]
    models: list[str] = []
    checkpoints: list[str] = []
    deployments_by_endpoint: dict[str, tuple[str, datetime] | None] = dict.fromkeys(ENDPOINTS)
    for r in range(runs):
        start = EPOCH + r * RUN_SPACING
        end = start + timedelta(hours=rng.uniform(1, 48))
        run = g.node("Run", f"run-{r}", job_id=f"job-{r}", job_name=f"train-{r % 300}", state="COMPLETE",
                     started_at=ts(start), ended_at=ts(end), created_at=now)  # fmt: skip
        window = max(8, len(versions) // 20)
        centre = int(r / runs * (len(versions) - window))
        for version in rng.sample(versions[centre : centre + window], 3):
            g.rel("USED", "Run", run, "DatasetVersion", version)
        g.rel("USED", "Run", run, "Config", configs[rng.randrange(len(configs))])
        g.rel("USED", "Run", run, "Code", commits[min(len(commits) - 1, r * len(commits) // runs)])
        if checkpoints and rng.random() < 0.2:
            g.rel("USED", "Run", run, "Checkpoint", checkpoints[-rng.randint(1, min(40, len(checkpoints)))])
        host = hosts[rng.randrange(len(hosts))]
        g.rel("RAN_ON", "Run", run, "Host", host)
        run_gpus = rng.sample(gpus[host], 4)
        for gpu in run_gpus:
            g.rel("RAN_ON", "Run", run, "GPU", gpu)
        for step in (1000, 2000):
            ckpt = g.node("Checkpoint", f"{run}-ckpt-{step}", step=step, created_at=now)
            g.rel("PRODUCED", "Run", run, "Checkpoint", ckpt)
            checkpoints.append(ckpt)
        model = g.node("Model", f"model-{r}:1", name=f"model-{r}", version="1", created_at=now)
        g.rel("PRODUCED", "Run", run, "Model", model)
        if models and rng.random() < 0.6:  # a fine-tune of a recent model
            g.rel("DERIVED_FROM", "Model", model, "Model", models[-rng.randint(1, min(200, len(models)))])
        models.append(model)
        for k in range(2):
            finished = end + timedelta(hours=rng.uniform(1, 24))
            ev = g.node("Evaluation", f"eval-{r}-{k}", benchmark=BENCHMARKS[(r + k) % len(BENCHMARKS)],
                        score=rng.random(), finished_at=ts(finished), created_at=now)  # fmt: skip
            g.rel("EVALUATED", "Evaluation", ev, "Model", model)
            g.rel(
                "USED", "Evaluation", ev, "DatasetVersion", eval_versions[rng.randrange(len(eval_versions))]
            )
        approved_at = end + timedelta(hours=rng.uniform(-2, 48))  # some before the evaluations finish
        if r % 2 == 0:
            appr = g.node("Approval", f"appr-{r}", decision="approved" if r % 20 else "rejected",
                          approved_at=ts(approved_at), created_at=now)  # fmt: skip
            g.rel("APPROVED", "Approval", appr, "Model", model)
            g.rel("GAVE", "Person", people[rng.randrange(len(people))], "Approval", appr)
        if r % 4 == 1:
            endpoint = ENDPOINTS[rng.randrange(len(ENDPOINTS))]
            dep_start = end + timedelta(days=2)
            dep = g.node("Deployment", f"dep-{r}", endpoint=endpoint, environment="prod",
                         started_at=ts(dep_start), created_at=now)  # fmt: skip
            g.rel("SERVES", "Deployment", dep, "Model", model)
            previous = deployments_by_endpoint[endpoint]
            if previous is not None:  # the endpoint's previous deployment ends when this one starts
                for row in g.nodes["Deployment"][::-1]:
                    if row["id"] == previous[0]:
                        row["ended_at"] = ts(max(dep_start, previous[1] + timedelta(seconds=1)))
                        break
            deployments_by_endpoint[endpoint] = (dep, dep_start)
        if r % 25 == 3:
            gpu = run_gpus[0]
            inc = g.node("Incident", f"inc-{r}", layer=HARDWARE_LAYERS[r % len(HARDWARE_LAYERS)],
                         kind="xid", severity="critical", started_at=ts(start + (end - start) / 2),
                         ended_at=ts(end + timedelta(hours=1)), created_at=now)  # fmt: skip
            g.rel("ON", "Incident", inc, "GPU", gpu)
            g.rel("AFFECTED", "Incident", inc, "Run", run)
    return g


def batches(rows: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


def bulk_load(lin: Lineage, g: Graph) -> None:
    """Load ``g`` with ``UNWIND`` batches (benchmark set-up only)."""
    for label, rows in g.nodes.items():
        for batch in batches(rows):
            keyed = [{**row, "key": node_key(row["id"])} for row in batch]
            lin.store.write(f"UNWIND $rows AS r CREATE (n:{label}) SET n = r", {"rows": keyed})
    for (rel, src, dst), pairs in g.rels.items():
        cypher = (
            f"UNWIND $rows AS r MATCH (a:{src} {{key: r[0]}}) MATCH (b:{dst} {{key: r[1]}}) "
            f"CREATE (a)-[:{rel}]->(b)"
        )
        for batch in batches(pairs):
            lin.store.write(cypher, {"rows": [[node_key(a), node_key(b)] for a, b in batch]})


def openlineage_events(count: int, g: Graph, rng: random.Random) -> list[str]:
    """``count`` RunEvents as JSON text: START/COMPLETE pairs over data sets already in the graph."""
    versions = [row for row in g.nodes["DatasetVersion"]]
    events = []
    for i in range(count // 2):
        run_id = str(uuid.UUID(int=rng.getrandbits(128)))
        inputs = [
            {"namespace": "bench", "name": row["name"], "facets": {"version": {
                "_producer": "https://example.com/bench", "_schemaURL":
                "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json",
                "datasetVersion": row["version"]}}}
            for row in rng.sample(versions, 2)
        ]  # fmt: skip
        for state, minutes in (("START", 0), ("COMPLETE", 90)):
            events.append(json.dumps({
                "eventType": state,
                "eventTime": ts(EPOCH + timedelta(days=i % 700, minutes=minutes)),
                "run": {"runId": run_id},
                "job": {"namespace": "bench", "name": f"etl-{i % 50}"},
                "inputs": inputs,
                "outputs": [{"namespace": "bench", "name": f"derived-{i}"}],
                "producer": "https://example.com/bench",
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            }))  # fmt: skip
    return events


def param_makers(g: Graph, rng: random.Random) -> dict[str, Callable[[], dict[str, Any]]]:
    """For each audit query, a function drawing one parameter set from the graph."""

    def pick(label: str) -> str:
        return str(rng.choice(g.nodes[label])["id"])

    last = EPOCH + len(g.nodes["Run"]) * RUN_SPACING

    def at() -> str:
        return ts(EPOCH + (last - EPOCH) * rng.random())

    return {
        "provenance": lambda: {"id": pick("Deployment"), "label": "Deployment"},
        "impact": lambda: {"id": pick("DatasetVersion")},
        "unapproved_deployments": dict,
        "unevaluated_models": lambda: {"benchmark": rng.choice(BENCHMARKS)},
        "approved_before_evaluation": dict,
        "restricted_data_models": dict,
        "served_at": lambda: {"endpoint": rng.choice(ENDPOINTS), "at": at()},
        "incident_exposure": lambda: {"incident": pick("Incident")},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_size(target: int, args: argparse.Namespace, root: Path) -> list[list[str]]:
    rng = random.Random(args.seed)
    started = time.perf_counter()
    g = build(target, rng)
    data = root / f"graph-{target}"
    lin = Lineage(open_store(f"embedded://{data}"), AuditLog(data / "audit.jsonl"), data / "quarantine.jsonl")
    try:
        t0 = time.perf_counter()
        bulk_load(lin, g)
        load_s = time.perf_counter() - t0
        nodes = lin.query("MATCH (n) RETURN count(n) AS c")[0]["c"]
        rels = lin.query("MATCH ()-[r]->() RETURN count(r) AS c")[0]["c"]
        print(f"# {target}: built {g.node_count} nodes / {g.rel_count} relationships, loaded in "
              f"{load_s:.1f} s (graph holds {nodes} nodes, {rels} relationships)", flush=True)  # fmt: skip
        events = openlineage_events(args.events, g, rng)
        t0 = time.perf_counter()
        for line_no, event in enumerate(events, start=1):
            lin.ingest(event, source=f"bench:{line_no}")
        ingest_s = time.perf_counter() - t0
        rows = [[f"{nodes:,}", "OpenLineage ingest", f"{len(events) / ingest_s:,.0f} events/s", "", ""]]
        print(f"# {target}: ingested {len(events)} events in {ingest_s:.1f} s", flush=True)
        makers = param_makers(g, rng)
        for name in QUERIES:
            lin.audit(name, makers[name]())  # warm the server's plan cache
            times, counts = [], []
            budget_end = time.perf_counter() + args.query_budget_s
            while len(times) < args.repeats and (len(times) < 3 or time.perf_counter() < budget_end):
                params = makers[name]()
                t0 = time.perf_counter()
                result = lin.audit(name, params)
                times.append((time.perf_counter() - t0) * 1000)
                counts.append(len(result))
            rows.append([
                f"{nodes:,}", f"{name} (n={len(times)})", f"{percentile(times, 0.5):.1f}",
                f"{percentile(times, 0.95):.1f}", f"{statistics.mean(counts):.0f}",
            ])  # fmt: skip
        print(f"# {target}: done in {time.perf_counter() - started:.0f} s", flush=True)
        return rows
    finally:
        lin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, action="append", help="graph size (repeatable); default 10000")
    parser.add_argument("--events", type=int, default=1000, help="OpenLineage events to ingest per size")
    parser.add_argument("--repeats", type=int, default=50, help="runs of each audit query")
    parser.add_argument(
        "--query-budget-s", type=float, default=20.0, help="stop repeating a query after this"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, help="keep the graphs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = args.nodes or [10000]
    with tempfile.TemporaryDirectory(prefix="fleetscope-bench-") as tmp:
        root = args.data_dir or Path(tmp)
        table = [row for size in sizes for row in bench_size(size, args, root)]
    header = ["nodes", "measure", "p50 ms / rate", "p95 ms", "rows"]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *table]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
