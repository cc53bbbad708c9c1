"""The lineage service: graph writes, OpenLineage ingestion and audit queries over one store, with
the hash-chained audit log as the write-ahead log.

A write is appended to the log and synced first, then applied to the graph, all while the log is
held (:meth:`fleetscope.lineage.auditlog.AuditLog.locked`), so the log's order is the order the graph
saw, across threads and processes. The graph keeps the ``seq`` and ``hash`` of the last record it
applied on one ``AuditHead`` node; on open, and before every write, records past it are replayed
(every write is an idempotent ``MERGE`` whose ``created_at`` is the record's time, so replaying
one already applied changes nothing). A kill -9 between the log and the graph therefore loses
nothing, and :meth:`Lineage.rebuild` recreates the whole graph from the log.

A logged write that the graph refuses (not one it could not be reached for) is followed by a
``refused`` record naming it, which replay skips; the graph and the log keep agreeing, and
:meth:`Lineage.check_graph` proves it by replaying the log into a scratch graph and comparing.

Group commit: the records of one batch share one fsync, and their RunEvents are written many to a
statement, in waves of events that commute (:func:`apply_records`); replay on open and
:meth:`Lineage.rebuild` write the same way. :meth:`Lineage.check_graph` replays one statement per
record, the reference the waves must match.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from fleetscope.lineage.auditlog import AuditLog, LogWriter
from fleetscope.lineage.openlineage import (
    ALONE,
    InvalidEvent,
    event_digest,
    event_statement,
    event_target,
    parse_event,
    row_touches,
    run_event_row,
    run_events_statement,
)
from fleetscope.lineage.queries import run_audit
from fleetscope.lineage.schema import ENTITIES, node_key, now_text
from fleetscope.lineage.store.base import KEY, GraphStore, Row, StoreError, StoreUnavailable
from fleetscope.lineage.writes import Link, Statement, entity_of, incident_statement, record_statement

# Properties the audit queries filter on besides the key.
LOOKUPS = [("Run", "job_id"), ("Deployment", "endpoint"), ("Incident", "layer")]
#: Events validated, logged with one fsync and applied per batch by :meth:`Lineage.ingest_file`.
BATCH_EVENTS = 512
#: ... or fewer, once their lines add up to this many bytes: a wave is one statement, and its
#: parameters are the events' data, so this bounds what one statement carries.
BATCH_BYTES = 8 << 20
#: Log records replayed between two marks of the graph's head (and progress reports).
REPLAY_CHUNK = 1000
_HEAD = "AuditHead"


@dataclass
class Prepared:
    """A validated OpenLineage event ready to log: its log ``data``, where it came from, and its
    RunEvent row (:func:`fleetscope.lineage.openlineage.run_event_row`, built before its log
    record exists: its ``now`` is set from the record when it is applied), or None."""

    data: dict[str, Any]
    source: str
    row: dict[str, Any] | None


class LogMismatch(StoreError):
    """The graph has applied audit records that the log does not hold; nothing is written."""


@dataclass
class IngestStats:
    """Counts of OpenLineage events: ``accepted`` (written or, for JobEvents, logged only),
    ``duplicates`` (already applied: not logged again), ``rejected`` (quarantined) and the
    rejection reasons in order."""

    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass
class GraphCheck:
    """The result of :meth:`Lineage.check_graph`.

    Attributes:
        available: False when the backend cannot hold the scratch graph the check needs.
        applied: the last log record the graph says it applied.
        log_records: the log's last ``seq``.
        problems: where the graph and the replayed log differ (per label and for relationships:
            counts, then SHA-256 of the sorted keys and properties).
    """

    available: bool
    applied: int = 0
    log_records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.available and not self.problems


def statement_for(record: dict[str, Any]) -> Statement | None:
    """The graph write a log record stands for, built with the record's time as ``now``; None for
    records that write nothing (``torn_tail``, ``refused``, a JobEvent)."""
    op, data, now = record["op"], record["data"], record["at"]
    if op == "record":
        links = [Link(*link) for link in data["links"]]
        return record_statement(data["label"], data["id"], data["props"], links, now)
    if op == "incident":
        return incident_statement(
            data["id"], data["props"], data["hosts"], data["gpus"], data["job_ids"], now
        )
    if op == "openlineage":
        return event_statement(data["event"], now)
    return None


def conflict_free_waves(rows: list[dict[str, Any]]) -> list[list[int]]:
    """Put RunEvent rows (:func:`fleetscope.lineage.openlineage.run_event_row`, in log order) into
    waves: the rows of one wave conflict with none of each other (:func:`row_touches`), and a row
    that conflicts with an earlier one goes into a later wave than it. Applying the waves in order,
    each as one statement, therefore gives the graph that applying the rows one by one gives: only
    rows that commute change places.

    Returns:
        The waves as lists of row indexes, in log order within each.
    """
    seen: dict[tuple[str, str], dict[Any, int]] = {}
    waves: list[list[int]] = []
    for index, row in enumerate(rows):
        touches = row_touches(row)
        wave = 0
        for node, what in touches:
            for other, level in seen.get(node, {}).items():
                if level >= wave and (what is ALONE or other is ALONE or other != what):
                    wave = level + 1
        for node, what in touches:
            levels = seen.setdefault(node, {})
            levels[what] = max(levels.get(what, -1), wave)
        if wave == len(waves):
            waves.append([])
        waves[wave].append(index)
    return waves


def apply_records(
    store: GraphStore, records: list[dict[str, Any]], rows: list[dict[str, Any] | None] | None = None
) -> list[list[Row] | StoreError]:
    """Apply log records to a store in log order, giving the graph that one statement per record
    gives: runs of RunEvents go in conflict-free waves (:func:`conflict_free_waves`), one statement
    per wave; a wave the store refuses is applied again one event at a time, so only the event
    the store refuses is refused; every other record is one statement.

    Args:
        store: the graph.
        records: log records, in log order.
        rows: for each record, its RunEvent row if already built (its ``now`` is set here from
            the record's time), else None; built here when not given.

    Returns:
        Per record, the rows its statement returned (``[]`` for an event written in a wave) or the
        :class:`StoreError` the store refused it with.

    Raises:
        StoreUnavailable: the store could not be reached (what was written stays written: the
            records are in the log and replay finishes them).
    """
    results: list[list[Row] | StoreError] = [[] for _ in records]
    pending: list[tuple[int, dict[str, Any]]] = []

    def write(index: int, statement: Statement) -> None:
        try:
            results[index] = store.write(statement.cypher, statement.params)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            results[index] = exc

    def flush() -> None:
        for wave in conflict_free_waves([row for _, row in pending]):
            if len(wave) == 1:
                index, row = pending[wave[0]]
                write(index, run_events_statement([row]))
                continue
            statement = run_events_statement([pending[i][1] for i in wave])
            try:
                store.write(statement.cypher, statement.params)
            except StoreUnavailable:
                raise
            except StoreError:
                for i in wave:  # find the event the store refuses; the others go in
                    write(pending[i][0], run_events_statement([pending[i][1]]))
        pending.clear()

    for index, record in enumerate(records):
        if record["op"] == "openlineage":
            row = rows[index] if rows else run_event_row(record["data"]["event"], record["at"])
            if row is not None:
                row["now"] = record["at"]
                pending.append((index, row))
                continue
        flush()
        statement = statement_for(record)
        if statement is not None:
            write(index, statement)
    flush()
    return results


def _line_chunks(handle: BinaryIO) -> Iterator[list[tuple[int, bytes]]]:
    """The non-blank lines of a file with their numbers, :data:`BATCH_EVENTS` lines or
    :data:`BATCH_BYTES` at a time."""
    chunk: list[tuple[int, bytes]] = []
    size = 0
    for line_no, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        chunk.append((line_no, line))
        size += len(line)
        if len(chunk) >= BATCH_EVENTS or size >= BATCH_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class Lineage:
    """Writes and queries over a graph store, with the audit log as its write-ahead log.

    Args:
        store: an open graph store; its schema is ensured and records the graph lacks are replayed.
        log: the audit log.
        quarantine: JSON-lines file that keeps rejected OpenLineage events with their reason.

    Attributes:
        out_of_step: why the graph and the log cannot be brought into step (the graph has applied
            records the log does not hold: another log, or a cut one), or None. Reads still work;
            every write raises :class:`LogMismatch` until it is resolved (``fleetscope lineage
            verify`` says more; ``rebuild`` recreates the graph from the log).

    Raises:
        StoreError: the store failed.
    """

    def __init__(self, store: GraphStore, log: AuditLog, quarantine: Path) -> None:
        self.store = store
        self.log = log
        self.quarantine = Path(quarantine)
        self.stats = IngestStats()
        self._lock = threading.Lock()
        store.ensure_schema(list(ENTITIES), LOOKUPS)
        self.out_of_step: str | None = None
        self.replayed = 0
        with self._lock, self.log.locked() as writer:
            try:
                self.replayed = self._catch_up(writer)
            except LogMismatch as exc:
                self.out_of_step = str(exc)

    # ------------------------------------------------------------------ the write-ahead protocol

    def _applied(self, store: GraphStore) -> int:
        rows = store.read(f"MATCH (h:{_HEAD} {{{KEY}: 'head'}}) RETURN h.seq AS seq")
        return int(rows[0]["seq"]) if rows and rows[0]["seq"] is not None else 0

    @staticmethod
    def _mark(store: GraphStore, record: dict[str, Any] | None) -> None:
        if record is not None:
            store.write(
                f"MERGE (h:{_HEAD} {{{KEY}: 'head'}}) SET h.seq = $seq, h.hash = $hash",
                {"seq": record["seq"], "hash": record["hash"]},
            )

    def _catch_up(self, writer: LogWriter) -> int:
        """Replay the records past the graph's head; returns how many were replayed."""
        applied = self._applied(self.store)
        last = writer.last["seq"] if writer.last else 0
        if applied > last:
            raise LogMismatch(
                f"the graph has applied {applied} audit records but {self.log.path} holds {last}: "
                "the log was cut or belongs to another graph (see `fleetscope lineage verify --store`)"
            )
        if applied == last:
            return 0
        records = self.log.records_after(applied)
        self._replay(self.store, writer, records)
        return len(records)

    def _replay(
        self,
        store: GraphStore,
        writer: LogWriter | None,
        records: Iterable[dict[str, Any]],
        refused: set[int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Apply ``records`` to ``store`` in chunks, marking the head after each. With a writer, a
        record the store refuses gets a ``refused`` record; without one (the reference replay of
        :meth:`check_graph`) every record is its own statement and a refusal raises."""
        records = list(records) if refused is None else records
        if refused is None:
            refused = {int(r["data"]["seq"]) for r in records if r["op"] == "refused"}
        count = 0
        chunk: list[dict[str, Any]] = []
        for record in records:
            count += 1
            if record["seq"] not in refused:
                chunk.append(record)
            if count % REPLAY_CHUNK == 0:
                self._replay_chunk(store, writer, chunk, record)
                chunk = []
                if progress is not None:
                    progress(count)
        if count:
            self._replay_chunk(store, writer, chunk, record)

    def _replay_chunk(
        self,
        store: GraphStore,
        writer: LogWriter | None,
        chunk: list[dict[str, Any]],
        last: dict[str, Any],
    ) -> None:
        if writer is None:
            for record in chunk:
                statement = statement_for(record)
                if statement is not None:
                    store.write(statement.cypher, statement.params)
            self._mark(store, last)
            return
        results = apply_records(store, chunk)
        refusals = [
            ("refused", {"seq": record["seq"], "reason": str(result)})
            for record, result in zip(chunk, results, strict=True)
            if isinstance(result, StoreError)
        ]
        if refusals:
            writer.append(refusals)
            last = writer.last or last
        self._mark(store, last)

    def _commit(self, items: list[tuple[str, dict[str, Any]]]) -> list[list[Row] | StoreError]:
        """Log ``items`` (one fsync), then apply each; a refusal is logged and returned in place."""
        with self._lock, self.log.locked() as writer:
            self._catch_up(writer)
            return self._apply_new(writer, items)

    def _apply_new(
        self,
        writer: LogWriter,
        items: list[tuple[str, dict[str, Any]]],
        rows: list[dict[str, Any] | None] | None = None,
    ) -> list[list[Row] | StoreError]:
        records = writer.append(items)
        results = apply_records(self.store, records, rows)
        refusals = [
            ("refused", {"seq": record["seq"], "reason": str(result)})
            for record, result in zip(records, results, strict=True)
            if isinstance(result, StoreError)
        ]
        if refusals:
            writer.append(refusals)
        self._mark(self.store, writer.last)
        return results

    # ------------------------------------------------------------------ writes

    def record(
        self, label: str, node_id: str, props: dict[str, Any] | None = None, links: list[Link] | None = None
    ) -> str:
        """Record one node of the graph model and its relationships (idempotent).

        Args:
            label: entity label (see :data:`fleetscope.lineage.schema.ENTITIES`).
            node_id: stable id (any text).
            props: properties (``*_at`` values as ISO-8601 or aware datetimes).
            links: relationships to other nodes, created as id-only nodes if missing.

        Returns:
            The node id.

        Raises:
            fleetscope.lineage.schema.LineageError: the model refuses the write; nothing is logged.
            lineage.store.base.StoreError: the store refused it (logged as refused) or failed.
        """
        statement = record_statement(label, node_id, dict(props or {}), list(links or []), now_text())
        data = {
            "label": label,
            "id": node_id,
            "props": statement.params["props"],
            "links": [[link.rel, link.label, link.id] for link in links or []],
        }
        self._raise(self._commit([("record", data)])[0])
        return node_id

    @staticmethod
    def _raise(result: list[Row] | StoreError) -> None:
        if isinstance(result, StoreError):
            raise result

    def missing(self, links: list[Link]) -> list[Link]:
        """The links whose far node is not in the graph yet."""
        out = []
        for link in links:
            entity_of(link.label)
            rows = self.store.read(
                f"MATCH (n:{link.label} {{{KEY}: $key}}) RETURN count(n) AS c", {"key": node_key(link.id)}
            )
            if not rows or not rows[0]["c"]:
                out.append(link)
        return out

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
            fleetscope.lineage.schema.LineageError: bad properties; nothing is logged.
            lineage.store.base.StoreError: the store refused it (logged as refused) or failed.
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
        self._raise(self._commit([("incident", data)])[0])
        return incident_id

    # ------------------------------------------------------------------ OpenLineage

    @staticmethod
    def _parse(raw: str | bytes, source: str) -> Prepared:
        """Validate one event (touching nothing of the service: ingest_file runs it in a thread).

        Raises:
            InvalidEvent: the event is invalid.
        """
        event, set_aside = parse_event(raw)
        data: dict[str, Any] = {"event": event}
        if set_aside:
            data["set_aside"] = [{"path": s.path, "reason": s.reason} for s in set_aside]
        return Prepared(data, source, run_event_row(event, ""))

    def _prepare(self, raw: str | bytes, source: str) -> Prepared:
        """Validate one event, or quarantine it and raise InvalidEvent."""
        try:
            return self._parse(raw, source)
        except InvalidEvent as exc:
            self._reject(raw, source, str(exc))
            raise

    def _new_events(self, batch: list[Prepared]) -> list[bool]:
        """For each prepared event, whether it has not been applied before (by its digest)."""
        digests = [item.row["digest"] if item.row else event_digest(item.data["event"]) for item in batch]
        by_label: dict[str, list[dict[str, str]]] = {}
        for item, digest in zip(batch, digests, strict=True):
            target = event_target(item.data["event"])
            if target is not None:
                by_label.setdefault(target[0], []).append({"k": target[1], "d": digest})
        seen: set[str] = set()
        for label, items in by_label.items():
            rows = self.store.read(
                f"UNWIND $items AS t MATCH (n:{label} {{{KEY}: t.k}}) "
                "WHERE t.d IN coalesce(n.event_digests, []) RETURN t.d AS d",
                {"items": items},
            )
            seen |= {row["d"] for row in rows}
        fresh = []
        for digest in digests:
            fresh.append(digest not in seen)
            seen.add(digest)  # the same event twice in one batch: the second is a duplicate
        return fresh

    def _ingest_batch(self, batch: list[Prepared], stats: IngestStats) -> None:
        with self._lock, self.log.locked() as writer:
            self._catch_up(writer)
            fresh = self._new_events(batch)
            todo = [item for item, new in zip(batch, fresh, strict=True) if new]
            stats.duplicates += len(batch) - len(todo)
            self.stats.duplicates += len(batch) - len(todo)
            items = [("openlineage", item.data) for item in todo]
            results = self._apply_new(writer, items, [item.row for item in todo])
        for item, result in zip(todo, results, strict=True):
            if isinstance(result, StoreError):
                reason = f"the graph store refused it (logged as refused): {result}"
                self._reject(json.dumps(item.data["event"]), item.source, reason)
                stats.rejected += 1
                stats.reasons.append(f"{item.source}: {reason}")
            else:
                stats.accepted += 1
                self.stats.accepted += 1

    def ingest(self, raw: str | bytes, *, source: str = "api") -> IngestStats:
        """Validate and apply one OpenLineage event (one log record, one statement).

        Args:
            raw: the event's JSON text.
            source: where it came from (``http:ADDRESS`` or ``api``), kept with a rejected event.

        Returns:
            The counts for this event: accepted, duplicate (applied before: not logged again) or
            rejected by the store.

        Raises:
            InvalidEvent: the event is invalid; it was quarantined and counted, and nothing of it
                was logged or written.
        """
        stats = IngestStats()
        self._ingest_batch([self._prepare(raw, source)], stats)
        return stats

    def _reject(self, raw: str | bytes, source: str, reason: str) -> None:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        entry = {"received_at": now_text(), "source": source, "reason": reason, "event": text}
        self.quarantine.parent.mkdir(parents=True, exist_ok=True)
        with open(self.quarantine, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.stats.rejected += 1
        self.stats.reasons.append(reason)

    def ingest_file(self, path: Path) -> IngestStats:
        """Ingest a JSON-lines file of events, one per line, in batches of :data:`BATCH_EVENTS`
        lines (at most :data:`BATCH_BYTES`) that share one fsync, and whose RunEvents are written
        many to a statement (:func:`apply_records`). Each event is still one unit: a line that is
        not UTF-8, not JSON, nested too deep, invalid or refused by the store is quarantined with
        its line number and the rest of the file goes on.

        The next batch is validated in a second thread while this one is written: the writes
        mostly wait for the graph server, and the validation is the CPU work of the next batch.

        Returns:
            The counts for this file.
        """
        stats = IngestStats()
        with open(path, "rb") as handle, ThreadPoolExecutor(1, "fleetscope-validate") as validator:
            chunks = _line_chunks(handle)
            pending = validator.submit(self._parse_chunk, path, next(chunks, []))
            while True:
                batch, rejected = pending.result()
                following = next(chunks, None)
                if following is not None:
                    pending = validator.submit(self._parse_chunk, path, following)
                for line_no, source, raw, reason in rejected:
                    self._reject(raw, source, reason)
                    stats.rejected += 1
                    stats.reasons.append(f"line {line_no}: {reason}")
                if batch:
                    self._ingest_batch(batch, stats)
                if following is None:
                    return stats

    @classmethod
    def _parse_chunk(
        cls, path: Path, lines: list[tuple[int, bytes]]
    ) -> tuple[list[Prepared], list[tuple[int, str, bytes, str]]]:
        """Validate lines: the events, and ``(line number, source, line, reason)`` of the others."""
        batch: list[Prepared] = []
        rejected: list[tuple[int, str, bytes, str]] = []
        for line_no, line in lines:
            source = f"{path}:{line_no}"
            try:
                batch.append(cls._parse(line, source))
            except InvalidEvent as exc:
                rejected.append((line_no, source, line, str(exc)))
        return batch, rejected

    # ------------------------------------------------------------------ the log and the graph

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Delete the graph and replay the whole log into it.

        Returns:
            The number of log records replayed.
        """
        with self._lock, self.log.locked() as writer:
            self.store.clear()
            self.store.ensure_schema(list(ENTITIES), LOOKUPS)
            count = self._replay_all(self.store, writer, progress)
            self.out_of_step = None
            return count

    def _replay_all(
        self, store: GraphStore, writer: LogWriter | None, progress: Callable[[int], None] | None = None
    ) -> int:
        refused = {int(r["data"]["seq"]) for r in self.log.records() if r["op"] == "refused"}
        count = 0

        def counted() -> Iterable[dict[str, Any]]:
            nonlocal count
            for record in self.log.records():
                count += 1
                yield record

        self._replay(store, writer, counted(), refused, progress)
        return count

    def check_graph(self) -> GraphCheck:
        """Check that the graph is what the log says: replay the log into a scratch graph on the
        same server and compare, per label and for relationships, the counts and a SHA-256 of the
        sorted keys and properties.

        Returns:
            The check; ``available`` is False for a backend without a scratch graph (Neo4j).
        """
        scratch = self.store.other_graph(f"{getattr(self.store, 'graph_name', 'graph')}__verify")
        if scratch is None:
            return GraphCheck(False)
        with self._lock, self.log.locked() as writer:
            check = GraphCheck(True, self._applied(self.store), writer.last["seq"] if writer.last else 0)
            if self.out_of_step:
                check.problems.append(self.out_of_step)
            elif check.applied != check.log_records:
                check.problems.append(
                    f"the graph has applied {check.applied} of the log's {check.log_records} records"
                )
            try:
                scratch.clear()
                scratch.ensure_schema(list(ENTITIES), LOOKUPS)
                self._replay_all(scratch, None)
                mine, theirs = _fingerprint(self.store), _fingerprint(scratch)
            finally:
                scratch.clear()
        for part in sorted(set(mine) | set(theirs)):
            have, want = mine.get(part, (0, "")), theirs.get(part, (0, ""))
            if have[0] != want[0]:
                check.problems.append(f"{part}: the graph holds {have[0]}, the log gives {want[0]}")
            elif have[1] != want[1]:
                check.problems.append(f"{part}: same count ({have[0]}) but different keys or properties")
        return check

    # ------------------------------------------------------------------ reads

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
        """Close the store (stopping an embedded server no other command uses)."""
        self.store.close()


def _digest(rows: list[Any]) -> str:
    text = json.dumps(sorted(json.dumps(row, sort_keys=True, default=str) for row in rows))
    return hashlib.sha256(text.encode()).hexdigest()


def _fingerprint(store: GraphStore) -> dict[str, tuple[int, str]]:
    """Per label and for relationships: (count, SHA-256 of the sorted rows)."""
    out: dict[str, tuple[int, str]] = {}
    for label in ENTITIES:
        rows = store.read(f"MATCH (n:{label}) RETURN properties(n) AS p")
        if rows:
            out[label] = (len(rows), _digest([row["p"] for row in rows]))
    rels = store.read(
        "MATCH (a)-[r]->(b) RETURN labels(a)[0] AS a, a.key AS ak, type(r) AS t, labels(b)[0] AS b, "
        "b.key AS bk, properties(r) AS p"
    )
    if rels:
        out["relationships"] = (len(rels), _digest(rels))
    return out
