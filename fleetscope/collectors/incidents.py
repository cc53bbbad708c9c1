"""The incident store: investigation reports kept in one SQLite file.

An incident is one investigation report in the JSON contract of docs/design.md (``incident``,
``root_causes``, ``timeline``, ``symptoms``, ``unparsed``) whose ``incident`` is true. The live
collector investigates its window again on every cycle, so the same fault is reported many times; the
store folds repeats into one row keyed by a fingerprint of the top root cause (layer, node, GPU, PCI bus
id), counting how often and when it was first and last seen.

Lifecycle: a new fingerprint is **opened**; a repeat while open **updates** it; an open incident whose
fault has not been reported for a quiet period is **resolved** (:meth:`IncidentStore.resolve_quiet`), or
resolved by hand (:meth:`IncidentStore.resolve`); a report of a resolved fault **reopens** it, so one
fault keeps one row across restarts of the collector and re-ingests of the same window.

SQLite is the embedded default (docs/design.md, "Embedded defaults"): one file, no server, safe for one
writer (the collector) and many readers (the console) through WAL mode.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    fingerprint TEXT PRIMARY KEY,
    layer       TEXT,
    node        TEXT,
    gpu         INTEGER,
    summary     TEXT NOT NULL,
    confidence  REAL NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    occurrences INTEGER NOT NULL,
    report      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_last_seen ON incidents (last_seen);
"""

#: Lifecycle columns, added to a store written by an earlier fleetscope (whose incidents were all open).
_LIFECYCLE_COLUMNS = {
    "state": "TEXT NOT NULL DEFAULT 'open'",
    "resolved_at": "TEXT",
    "resolved_by": "TEXT",
    "reopened": "INTEGER NOT NULL DEFAULT 0",
}

#: Incident states.
OPEN, RESOLVED = "open", "resolved"

#: What :meth:`IncidentStore.record` did with a report.
OPENED, UPDATED, REOPENED = "opened", "updated", "reopened"


@dataclass(frozen=True)
class Incident:
    """One stored incident.

    Attributes:
        fingerprint: SHA-256 (hex, 16 chars kept) of the top root cause's layer, node, GPU and PCI id.
        layer: the root cause's layer (docs/design.md vocabulary), or None when the engine is unsure.
        node: culprit node, or None.
        gpu: culprit GPU index (nvidia-smi order), or None.
        summary: the root cause in one sentence.
        confidence: 0-1, from the latest report.
        first_seen: UTC time the fault was first recorded.
        last_seen: UTC time of the latest report of it.
        occurrences: how many reports folded into this row.
        report: the latest full report (docs/design.md JSON contract).
        state: ``open`` or ``resolved``.
        resolved_at: UTC time it was last resolved, or None while it has never been.
        resolved_by: ``quiet`` (no report for the quiet period) or who resolved it by hand.
        reopened: how many times a report of the fault reopened it after it was resolved.
    """

    fingerprint: str
    layer: str | None
    node: str | None
    gpu: int | None
    summary: str
    confidence: float
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    report: dict[str, Any]
    state: str = OPEN
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    reopened: int = 0


@dataclass(frozen=True)
class Change:
    """What happened to an incident: ``opened``, ``updated``, ``reopened`` or ``resolved``."""

    kind: str
    incident: Incident


def fingerprint(report: dict[str, Any]) -> str:
    """Identify the fault a report names, so repeated reports of it fold into one incident.

    Args:
        report: an investigation report with at least one root cause.

    Returns:
        16 hex characters.

    Raises:
        ValueError: the report names no root cause.
    """
    causes = report.get("root_causes") or []
    if not causes:
        raise ValueError("an incident report needs at least one root cause")
    top = causes[0]
    # Where the fault is, not what it is called: over successive windows the diagnosis of one fault
    # sharpens (a GPU apart from its peers, then the same GPU's rank starved of input), and each report
    # updates the one incident; a layer once named is kept when a later window's report names none.
    # A GPU by its index where the finding has one, else by its PCI bus id (findings from the driver's
    # log may know only that).
    gpu = top.get("gpu") if top.get("gpu") is not None else top.get("gpu_pci_bus_id")
    key = json.dumps([top.get("node"), gpu])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _gpu_of(cause: dict[str, Any]) -> object:
    return cause.get("gpu") if cause.get("gpu") is not None else cause.get("gpu_pci_bus_id")


def _open_around(db: sqlite3.Connection, top: dict[str, Any]) -> str | None:
    """The fingerprint of the open incident on ``top``'s node, most recently seen first, whose place
    holds ``top``'s or is held by it (one of the two names no GPU), or None."""
    if top.get("node") is None:
        return None
    gpu = _gpu_of(top)
    for row in db.execute(
        "SELECT fingerprint, gpu, report FROM incidents WHERE state = 'open' AND node = ? "
        "ORDER BY last_seen DESC",
        (top["node"],),
    ):
        theirs = (
            row["gpu"] if row["gpu"] is not None else _gpu_of(json.loads(row["report"])["root_causes"][0])
        )
        if gpu is None or theirs is None:
            return str(row["fingerprint"])
    return None


class IncidentStore:
    """Incidents in a SQLite file.

    Args:
        path: the database file; created (with its folder) when missing. ``":memory:"`` for a
            throw-away store.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        have = {row["name"] for row in self._db.execute("PRAGMA table_info(incidents)")}
        with self._transaction() as db:
            for name, declaration in _LIFECYCLE_COLUMNS.items():
                if name not in have:
                    try:
                        db.execute(f"ALTER TABLE incidents ADD COLUMN {name} {declaration}")
                    except sqlite3.OperationalError as exc:
                        # Another process opening the same new store added it between our look and now.
                        if "duplicate column" not in str(exc):
                            raise

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db:
            yield self._db

    def record(self, report: dict[str, Any], *, now: datetime | None = None) -> Change | None:
        """Store a report, folding it into the incident it repeats.

        Args:
            report: an investigation report (docs/design.md JSON contract).
            now: the time of the report (UTC); defaults to the current time.

        A report is folded into the incident of its place (:func:`fingerprint`); where that incident is
        not open, into an open incident on the same node whose place holds the report's or is held by
        it (the node without a GPU, and one GPU of it): one fault read at the node's grain in one
        window and at a GPU's in another (all of a node's ranks apart from their peers while the
        job's pace changes, then the one slow GPU) is one incident, which takes the GPU once one is
        named.

        Returns:
            What happened (``opened``, ``updated`` or ``reopened``) with the stored incident, or None
            when the report says the system is healthy.
        """
        if not report.get("incident"):
            return None
        key = fingerprint(report)
        top = report["root_causes"][0]
        seen = (now or datetime.now(UTC)).isoformat()
        with self._transaction() as db:
            before = db.execute("SELECT state FROM incidents WHERE fingerprint = ?", (key,)).fetchone()
            if before is None or before["state"] == RESOLVED:
                around = _open_around(db, top)
                if around is not None:
                    key, before = around, {"state": "open"}
            db.execute(
                """
                INSERT INTO incidents (fingerprint, layer, node, gpu, summary, confidence,
                                       first_seen, last_seen, occurrences, report, state)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, 'open')
                ON CONFLICT (fingerprint) DO UPDATE SET
                    layer = coalesce(excluded.layer, layer), gpu = coalesce(gpu, excluded.gpu),
                    summary = excluded.summary,
                    confidence = excluded.confidence,
                    last_seen = max(last_seen, excluded.last_seen), occurrences = occurrences + 1,
                    report = excluded.report, state = 'open',
                    reopened = reopened + (state = 'resolved')
                """,
                (
                    key,
                    top.get("layer"),
                    top.get("node"),
                    top.get("gpu"),
                    str(top.get("summary", "")),
                    float(top.get("confidence", 0.0)),
                    seen,
                    seen,
                    json.dumps(report),
                ),
            )
        incident = self.get(key)
        assert incident is not None  # written just above, in this connection
        if before is None:
            return Change(OPENED, incident)
        return Change(REOPENED if before["state"] == RESOLVED else UPDATED, incident)

    def resolve_quiet(self, quiet: timedelta, *, now: datetime | None = None) -> list[Change]:
        """Resolve every open incident whose fault has not been reported for ``quiet``.

        Args:
            quiet: how long a fault must go unreported before its incident is resolved.
            now: the current time (UTC); defaults to the clock.

        Returns:
            One ``resolved`` change per incident resolved, oldest last report first.
        """
        at = now or datetime.now(UTC)
        cutoff = (at - quiet).isoformat()
        with self._transaction() as db:
            keys = [
                row["fingerprint"]
                for row in db.execute(
                    "SELECT fingerprint FROM incidents WHERE state = 'open' AND last_seen < ? "
                    "ORDER BY last_seen",
                    (cutoff,),
                )
            ]
            db.executemany(
                "UPDATE incidents SET state = 'resolved', resolved_at = ?, resolved_by = 'quiet' "
                "WHERE fingerprint = ?",
                [(at.isoformat(), key) for key in keys],
            )
        return [Change(RESOLVED, incident) for key in keys if (incident := self.get(key)) is not None]

    def resolve(self, key: str, *, by: str = "user", now: datetime | None = None) -> Change:
        """Resolve one incident by hand (an on-call engineer fixed it).

        Args:
            key: the incident's fingerprint, or a unique prefix of it (at least 4 characters).
            by: who resolved it, kept in ``resolved_by``.
            now: the time (UTC); defaults to the clock.

        Returns:
            The ``resolved`` change.

        Raises:
            KeyError: no incident, or more than one, has that fingerprint prefix; or it is already
                resolved.
        """
        incident = self.find(key)
        if incident.state == RESOLVED:
            raise KeyError(f"incident {incident.fingerprint} is already resolved")
        at = (now or datetime.now(UTC)).isoformat()
        with self._transaction() as db:
            db.execute(
                "UPDATE incidents SET state = 'resolved', resolved_at = ?, resolved_by = ? "
                "WHERE fingerprint = ?",
                (at, by, incident.fingerprint),
            )
        resolved = self.get(incident.fingerprint)
        assert resolved is not None
        return Change(RESOLVED, resolved)

    def find(self, key: str) -> Incident:
        """The incident whose fingerprint starts with ``key``.

        Raises:
            KeyError: ``key`` is shorter than 4 characters, or matches no incident or several.
        """
        if len(key) < 4:
            raise KeyError(f"give at least 4 characters of the incident id, got {key!r}")
        rows = self._db.execute(
            "SELECT * FROM incidents WHERE substr(fingerprint, 1, ?) = ? LIMIT 2", (len(key), key.lower())
        ).fetchall()
        if not rows:
            raise KeyError(f"no incident {key!r}")
        if len(rows) > 1:
            raise KeyError(f"incident id {key!r} is ambiguous: give more characters")
        return _incident(rows[0])

    def get(self, key: str) -> Incident | None:
        """The incident with this fingerprint, or None."""
        row = self._db.execute("SELECT * FROM incidents WHERE fingerprint = ?", (key,)).fetchone()
        return _incident(row) if row else None

    def count(self, state: str | None = None) -> int:
        """How many incidents there are, or how many in ``state`` (``open`` or ``resolved``)."""
        if state is None:
            return int(self._db.execute("SELECT count(*) FROM incidents").fetchone()[0])
        return int(self._db.execute("SELECT count(*) FROM incidents WHERE state = ?", (state,)).fetchone()[0])

    def recent(self, limit: int = 100, state: str | None = None) -> list[Incident]:
        """Incidents, the most recently seen first.

        Args:
            limit: at most this many.
            state: only ``open`` or only ``resolved`` ones; None for both.
        """
        if state is None:
            rows = self._db.execute(
                "SELECT * FROM incidents ORDER BY last_seen DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM incidents WHERE state = ? ORDER BY last_seen DESC LIMIT ?", (state, limit)
            ).fetchall()
        return [_incident(row) for row in rows]


def _incident(row: sqlite3.Row) -> Incident:
    return Incident(
        fingerprint=row["fingerprint"],
        layer=row["layer"],
        node=row["node"],
        gpu=row["gpu"],
        summary=row["summary"],
        confidence=row["confidence"],
        first_seen=datetime.fromisoformat(row["first_seen"]),
        last_seen=datetime.fromisoformat(row["last_seen"]),
        occurrences=row["occurrences"],
        report=json.loads(row["report"]),
        state=row["state"],
        resolved_at=datetime.fromisoformat(row["resolved_at"]) if row["resolved_at"] else None,
        resolved_by=row["resolved_by"],
        reopened=row["reopened"],
    )
