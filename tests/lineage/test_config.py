"""Lineage settings: the audit log and the quarantine follow the embedded store unless placed elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetscope.lineage.config import LineageConfig


@pytest.fixture(autouse=True)
def _no_lineage_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("URI", "AUDIT_LOG", "QUARANTINE"):
        monkeypatch.delenv(f"FLEETSCOPE_LINEAGE_{name}", raising=False)


def test_logs_live_beside_an_embedded_store(tmp_path: Path) -> None:
    config = LineageConfig.load(store_uri=f"embedded://{tmp_path / 'graph'}")
    assert config.audit_log == tmp_path / "graph" / "audit.jsonl"
    assert config.quarantine == tmp_path / "graph" / "quarantine.jsonl"


def test_explicit_places_win_over_the_store_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETSCOPE_LINEAGE_AUDIT_LOG", str(tmp_path / "elsewhere.jsonl"))
    config = LineageConfig.load(store_uri=f"embedded://{tmp_path / 'graph'}")
    assert config.audit_log == tmp_path / "elsewhere.jsonl"
    assert config.quarantine == tmp_path / "graph" / "quarantine.jsonl"


def test_a_bolt_store_keeps_the_logs_in_the_default_data_folder() -> None:
    config = LineageConfig.load(store_uri="bolt://127.0.0.1:7687")
    assert config.audit_log == LineageConfig.audit_log
    assert config.quarantine == LineageConfig.quarantine
