"""The SQLite incident store folds repeated reports of one fault into one incident."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetscope.collectors.incidents import (
    OPEN,
    OPENED,
    REOPENED,
    RESOLVED,
    UPDATED,
    IncidentStore,
    fingerprint,
)


def _report(node: str, gpu: int | None, confidence: float = 0.9) -> dict:
    return {
        "incident": True,
        "root_causes": [
            {
                "layer": "gpu_hardware",
                "node": node,
                "gpu": gpu,
                "gpu_pci_bus_id": None,
                "confidence": confidence,
                "summary": f"GPU {gpu} on {node} fell off the bus (Xid 79)",
                "action": "drain the node",
                "evidence": [],
            }
        ],
        "timeline": [],
        "symptoms": [],
        "unparsed": {"files": 0, "lines": 0},
    }


def test_repeats_fold_and_distinct_faults_stay_apart(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "state" / "incidents.db")
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.record(_report("node-01", 1, 0.8), now=t0)
    store.record(_report("node-01", 1, 0.95), now=t0 + timedelta(minutes=1))
    store.record(_report("node-02", 3), now=t0 + timedelta(minutes=2))
    store.close()

    reopened = IncidentStore(tmp_path / "state" / "incidents.db")
    newest, oldest = reopened.recent()
    assert (newest.node, newest.gpu, newest.occurrences) == ("node-02", 3, 1)
    assert (oldest.node, oldest.gpu, oldest.occurrences) == ("node-01", 1, 2)
    assert oldest.first_seen == t0
    assert oldest.last_seen == t0 + timedelta(minutes=1)
    assert oldest.confidence == 0.95
    assert oldest.report["root_causes"][0]["summary"].startswith("GPU 1 on node-01")


def test_healthy_report_is_not_an_incident() -> None:
    store = IncidentStore(":memory:")
    assert store.record({"incident": False, "root_causes": []}) is None
    assert store.recent() == []


def test_incident_without_root_cause_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one root cause"):
        fingerprint({"incident": True, "root_causes": []})


def test_lifecycle_open_update_resolve_when_quiet_reopen(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    quiet = timedelta(minutes=10)
    opened = store.record(_report("node-01", 1), now=t0)
    assert opened is not None and (opened.kind, opened.incident.state) == (OPENED, OPEN)
    updated = store.record(_report("node-01", 1), now=t0 + timedelta(minutes=1))
    assert updated is not None and updated.kind == UPDATED
    store.record(_report("node-02", 3), now=t0 + timedelta(minutes=8))

    # node-01's fault was last reported at t0+1min: quiet for 10 minutes at t0+11min+1s; node-02's is not.
    assert store.resolve_quiet(quiet, now=t0 + timedelta(minutes=11)) == []
    (resolved,) = store.resolve_quiet(quiet, now=t0 + timedelta(minutes=11, seconds=1))
    assert (resolved.kind, resolved.incident.node, resolved.incident.state) == (
        RESOLVED,
        "node-01",
        "resolved",
    )
    assert resolved.incident.resolved_by == "quiet"
    assert resolved.incident.resolved_at == t0 + timedelta(minutes=11, seconds=1)
    assert store.resolve_quiet(quiet, now=t0 + timedelta(minutes=11, seconds=2)) == []  # once only
    assert [i.node for i in store.recent(state="open")] == ["node-02"]
    assert store.count("open") == 1 and store.count() == 2
    store.close()

    # The fault comes back after a restart of the collector: the same row reopens, no duplicate.
    again = IncidentStore(tmp_path / "incidents.db")
    reopened = again.record(_report("node-01", 1), now=t0 + timedelta(hours=1))
    assert reopened is not None and reopened.kind == REOPENED
    assert (reopened.incident.state, reopened.incident.reopened, reopened.incident.occurrences) == (
        OPEN,
        1,
        3,
    )
    assert reopened.incident.first_seen == t0
    assert again.count() == 2


def test_resolve_by_hand_with_an_id_prefix(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    recorded = store.record(_report("node-01", 1))
    assert recorded is not None
    key = recorded.incident.fingerprint
    change = store.resolve(key[:6], by="alice")
    assert (change.incident.state, change.incident.resolved_by) == ("resolved", "alice")
    with pytest.raises(KeyError, match="already resolved"):
        store.resolve(key)
    with pytest.raises(KeyError, match="at least 4"):
        store.find("ab")
    with pytest.raises(KeyError, match="no incident"):
        store.find("0000000000000000" if not key.startswith("0000") else "ffffffffffffffff")


def test_a_store_written_before_the_lifecycle_opens_with_every_incident_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema fleetscope 0.1 wrote, with one incident in it
        db.executescript(
            "CREATE TABLE incidents (fingerprint TEXT PRIMARY KEY, layer TEXT, node TEXT, gpu INTEGER,"
            " summary TEXT NOT NULL, confidence REAL NOT NULL, first_seen TEXT NOT NULL,"
            " last_seen TEXT NOT NULL, occurrences INTEGER NOT NULL, report TEXT NOT NULL);"
        )
        report = _report("node-05", 2)
        db.execute(
            "INSERT INTO incidents VALUES (?, 'gpu_hardware', 'node-05', 2, 's', 0.9, ?, ?, 4, ?)",
            (
                fingerprint(report),
                "2026-01-01T00:00:00+00:00",
                "2026-01-01T00:05:00+00:00",
                json.dumps(report),
            ),
        )
    db.close()
    store = IncidentStore(path)
    (incident,) = store.recent()
    assert (incident.state, incident.occurrences, incident.reopened) == (OPEN, 4, 0)
    change = store.record(report, now=datetime(2026, 1, 1, 0, 6, tzinfo=UTC))
    assert change is not None and change.kind == UPDATED and change.incident.occurrences == 5


def test_a_node_and_one_of_its_gpus_open_one_incident_that_takes_the_gpu(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # A window reads the fault at the node's grain (all its ranks apart), the next names its GPU.
    assert store.record(_report("node-01", None), now=t0).kind == "opened"
    assert store.record(_report("node-01", 2), now=t0 + timedelta(seconds=15)).kind == "updated"
    assert store.record(_report("node-01", None), now=t0 + timedelta(seconds=30)).kind == "updated"
    (incident,) = store.recent()
    assert (incident.node, incident.gpu, incident.occurrences) == ("node-01", 2, 3)
    # The other way round: the GPU first, then the node.
    assert store.record(_report("node-02", 5), now=t0).kind == "opened"
    assert store.record(_report("node-02", None), now=t0 + timedelta(seconds=15)).kind == "updated"
    # Two GPUs of one node are two places; another node is another place.
    assert store.record(_report("node-02", 6), now=t0 + timedelta(seconds=20)).kind == "opened"
    assert store.record(_report("node-03", None), now=t0 + timedelta(seconds=20)).kind == "opened"
    assert sorted((i.node, -1 if i.gpu is None else i.gpu) for i in store.recent()) == [
        ("node-01", 2),
        ("node-02", 5),
        ("node-02", 6),
        ("node-03", -1),
    ]


def test_a_node_report_opens_anew_once_the_gpus_incident_is_resolved(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.record(_report("node-01", 2), now=t0)
    store.resolve_quiet(timedelta(minutes=10), now=t0 + timedelta(minutes=11))
    assert store.record(_report("node-01", None), now=t0 + timedelta(minutes=12)).kind == "opened"
