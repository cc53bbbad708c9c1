"""The incident store: investigation reports kept in one SQLite file.

An incident is one investigation report in the JSON contract of docs/design.md (``incident``,
``root_causes``, ``timeline``, ``symptoms``, ``unparsed``) whose ``incident`` is true. The live
collector investigates its window again on every cycle, so the same fault is reported many times; the
store folds repeats into one row keyed by a fingerprint of the top root cause (layer, node, GPU, PCI bus
id), counting how often and when it was first and last seen.

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
from datetime import UTC, datetime
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
    key = json.dumps([top.get(k) for k in ("layer", "node", "gpu", "gpu_pci_bus_id")])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


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

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db:
            yield self._db

    def record(self, report: dict[str, Any], *, now: datetime | None = None) -> Incident | None:
        """Store a report, folding it into the incident it repeats.

        Args:
            report: an investigation report (docs/design.md JSON contract).
            now: the time of the report (UTC); defaults to the current time.

        Returns:
            The stored incident, or None when the report says the system is healthy.
        """
        if not report.get("incident"):
            return None
        key = fingerprint(report)
        top = report["root_causes"][0]
        seen = (now or datetime.now(UTC)).isoformat()
        with self._transaction() as db:
            db.execute(
                """
                INSERT INTO incidents (fingerprint, layer, node, gpu, summary, confidence,
                                       first_seen, last_seen, occurrences, report)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
                ON CONFLICT (fingerprint) DO UPDATE SET
                    summary = excluded.summary, confidence = excluded.confidence,
                    last_seen = excluded.last_seen, occurrences = occurrences + 1,
                    report = excluded.report
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
        return incident

    def get(self, key: str) -> Incident | None:
        """The incident with this fingerprint, or None."""
        row = self._db.execute("SELECT * FROM incidents WHERE fingerprint = ?", (key,)).fetchone()
        return _incident(row) if row else None

    def recent(self, limit: int = 100) -> list[Incident]:
        """Incidents, the most recently seen first.

        Args:
            limit: at most this many.
        """
        rows = self._db.execute(
            "SELECT * FROM incidents ORDER BY last_seen DESC LIMIT ?", (limit,)
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
    )
