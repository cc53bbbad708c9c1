"""Durable OpenLineage ingest and cold start of the embedded store, on one machine, in one run.

Run: ``python -m benchmarks.bench_lineage_durability --events 100000``
(``--single`` events for the one-fsync-per-event path, ``--data-dir`` keeps the store).

Four measures:

- ``ingest, one event per call``: :meth:`fleetscope.lineage.Lineage.ingest` per event (the HTTP
  endpoint's path): validate, one audit-log append and fsync, one MERGE statement.
- ``ingest, group commit``: :meth:`fleetscope.lineage.Lineage.ingest_file` (``fleetscope lineage
  ingest``): the same work, with each batch of events sharing one append and one fsync, and its
  RunEvents applied in conflict-free waves, one statement per wave.
- ``where the time goes``: the steps of group commit timed one by one on the same kind of events
  (into a fresh graph of the same server), in microseconds per event: validation, the log append
  (canonical JSON, SHA-256 chain, one fsync per batch), the rows and waves, and the store's writes
  (the client encoding the parameters, the server running the statements).
- ``cold start``: after the last command closes the store (which rewrites a grown append-only file
  into an RDB snapshot), the time a new command takes to start the server, load the graph and check
  the write-ahead log before its first write, the server's CPU time for it (a figure that holds on
  a loaded machine) and the size of the files it loads.

Events are START/COMPLETE pairs of a chain of runs, each reading the previous run's output and a
shared reference dataset (with a schema facet) and writing the next: every event touches the
graph, none is a duplicate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from fleetscope.lineage import AuditLog, Lineage, open_store
from fleetscope.lineage.openlineage import parse_event, run_event_row, run_events_statement
from fleetscope.lineage.schema import ENTITIES
from fleetscope.lineage.service import BATCH_EVENTS, LOOKUPS, conflict_free_waves

PRODUCER = "https://example.com/bench"
SCHEMA = {
    "_producer": PRODUCER,
    "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
    "fields": [{"name": "id", "type": "int"}, {"name": "text", "type": "string"}],
}


def events(count: int, offset: int = 0) -> list[str]:
    """``count`` RunEvents as JSON lines (see the module docstring)."""
    out = []
    for index in range(offset, offset + count // 2):
        run_id = str(uuid.UUID(int=index + 1))
        for state, minute in (("START", "00"), ("COMPLETE", "30")):
            out.append(
                json.dumps(
                    {
                        "eventType": state,
                        "eventTime": f"2024-05-01T10:{minute}:00Z",
                        "producer": PRODUCER,
                        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                        "run": {"runId": run_id},
                        "job": {"namespace": "bench", "name": f"stage-{index % 100}"},
                        "inputs": [
                            {"namespace": "s3://bench", "name": f"d{index}"},
                            {"namespace": "s3://bench", "name": "reference", "facets": {"schema": SCHEMA}},
                        ],
                        "outputs": [{"namespace": "s3://bench", "name": f"d{index + 1}"}],
                    }
                )
            )
    return out


def phases(service: Lineage, lines: list[str]) -> list[list[str]]:
    """Time group commit's steps one by one on ``lines`` (see the module docstring): wall time,
    and CPU time, this process's and, for the writes, the server's too. CPU time is what a step
    costs whatever else the machine is doing."""
    spent: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def timed(name: str) -> Iterator[None]:
        wall, cpu, server = time.perf_counter(), time.process_time(), server_cpu_s(service) or 0.0
        yield
        total = spent.setdefault(name, [0.0, 0.0, 0.0])
        total[0] += time.perf_counter() - wall
        total[1] += time.process_time() - cpu
        total[2] += (server_cpu_s(service) or 0.0) - server

    scratch = service.store.other_graph("phases")
    assert scratch is not None, "the embedded store holds scratch graphs"
    scratch.ensure_schema(list(ENTITIES), LOOKUPS)
    log = AuditLog(service.log.path.with_name("phases.jsonl"))
    try:
        for start in range(0, len(lines), BATCH_EVENTS):
            with timed("validate (JSON, schema)"):
                events = [parse_event(line)[0] for line in lines[start : start + BATCH_EVENTS]]
            with timed("log append + fsync"), log.locked() as writer:
                records = writer.append([("openlineage", {"event": event}) for event in events])
            with timed("rows, waves, statements"):
                rows = [run_event_row(record["data"]["event"], record["at"]) for record in records]
                waves = conflict_free_waves(rows)
                statements = [run_events_statement([rows[i] for i in wave]) for wave in waves]
            with timed("store writes (encode, send, run)"):
                for statement in statements:
                    scratch.write(statement.cypher, statement.params)
    finally:
        scratch.clear()
        log.path.unlink()
    per_event = 1e6 / len(lines)
    out = []
    for name, (wall, cpu, server) in spent.items():
        cost = f"{wall * per_event:,.0f} us/event ({cpu * per_event:,.0f} us CPU"
        out.append(
            [f"  {name}", "", cost + (f" + {server * per_event:,.0f} us server CPU)" if server else ")")]
        )
    wall = sum(total[0] for total in spent.values())
    cpu = sum(total[1] + total[2] for total in spent.values())
    return [
        *out,
        ["  all steps", f"{len(lines):,}", f"{len(lines) / wall:,.0f} events/s"],
        ["  all steps on CPU time alone", "", f"{len(lines) / cpu:,.0f} events/s"],
    ]


def server_cpu_s(service: Lineage) -> float | None:
    """CPU seconds the embedded server has used so far (Linux ``/proc/PID/stat``: user + system),
    or None where that cannot be read (a server another process started, another system)."""
    process = getattr(getattr(service.store, "server", None), "process", None)
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (AttributeError, OSError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_service(data: Path) -> Lineage:
    return Lineage(open_store(f"embedded://{data}"), AuditLog(data / "audit.jsonl"), data / "q.jsonl")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=100_000, help="events for group commit and cold start")
    parser.add_argument("--single", type=int, default=2_000, help="events ingested one call each")
    parser.add_argument("--data-dir", type=Path, help="keep the store here (default: a temporary folder)")
    args = parser.parse_args(argv)
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="fleetscope-bench-") as tmp:
        data = (args.data_dir or Path(tmp)) / "store"
        service = open_service(data)
        try:
            single = events(args.single, offset=10_000_000)
            t0 = time.perf_counter()
            for line in single:
                service.ingest(line)
            rate = len(single) / (time.perf_counter() - t0)
            rows.append(["ingest, one event per call", f"{len(single):,}", f"{rate:,.0f} events/s"])
            path = data.parent / "events.jsonl"
            path.write_text("\n".join(events(args.events)) + "\n")
            t0 = time.perf_counter()
            stats = service.ingest_file(path)
            rate = stats.accepted / (time.perf_counter() - t0)
            rows.append(["ingest, group commit", f"{stats.accepted:,}", f"{rate:,.0f} events/s"])
            rows.append(["where the time goes", "", ""])
            rows += phases(service, events(min(args.events, 20_000), offset=20_000_000))
        finally:
            t0 = time.perf_counter()
            service.close()
            rows.append(["last close (snapshot rewrite)", "", f"{time.perf_counter() - t0:.2f} s"])
        aof = sum(f.stat().st_size for f in (data / "appendonlydir").iterdir())
        log = (data / "audit.jsonl").stat().st_size
        t0 = time.perf_counter()
        service = open_service(data)
        cold = time.perf_counter() - t0
        try:
            loading = server_cpu_s(service)
            nodes = service.query("MATCH (n) RETURN count(n) AS c")[0]["c"]
        finally:
            service.close()
        total = args.events + args.single
        rows.append(["cold start (start, load, log check)", f"{total:,} events", f"{cold:.2f} s"])
        cpu = "n/a" if loading is None else f"{loading:.2f} s"
        rows.append(["  the server's CPU time to start and load", "", cpu])
        rows.append(["  graph nodes / persistence files", f"{nodes:,}", f"{aof / 1e6:.1f} MB"])
        rows.append(["  audit log", "", f"{log / 1e6:.1f} MB"])
    header = ["measure", "events", "result"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
