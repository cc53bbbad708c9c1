"""The SQLite incident store folds repeated reports of one fault into one incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetscope.collectors.incidents import IncidentStore, fingerprint


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
