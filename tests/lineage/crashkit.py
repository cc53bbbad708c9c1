"""Helpers of the crash-test suite: OpenLineage events made up here, the ``fleetscope`` command as
a subprocess, and the check every crash test ends with (a verified log and a graph that agrees)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from fleetscope.lineage import AuditLog, Lineage, open_store, verify_log

ROOT = Path(__file__).resolve().parents[2]
PRODUCER = "https://github.com/fleetscope/fleetscope/tests"


def run_event(run_id: str, state: str, inputs: list[str], outputs: list[str], **extra: object) -> dict:
    """A RunEvent of job ``crash``: ``inputs``/``outputs`` are dataset names in namespace ``s3://b``."""
    event: dict = {
        "eventType": state,
        "eventTime": "2024-05-01T10:00:00Z",
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id},
        "job": {"namespace": "crash", "name": f"job-{run_id[:8]}"},
        "inputs": [{"namespace": "s3://b", "name": name} for name in inputs],
        "outputs": [{"namespace": "s3://b", "name": name} for name in outputs],
    }
    event.update(extra)
    return event


def pipeline_file(path: Path, events: int, seed: int = 0) -> list[str]:
    """A long ingest: a chain of runs, each reading the previous run's output (START, COMPLETE).

    Returns:
        The lines written.
    """
    lines = []
    for index in range(events // 2):
        run_id = str(uuid.UUID(int=(seed << 64) + index + 1))
        io = ([f"d{index}"], [f"d{index + 1}"])
        for state in ("START", "COMPLETE"):
            lines.append(json.dumps(run_event(run_id, state, *io)))
    path.write_text("\n".join(lines) + "\n")
    return lines


def fleetscope(env: dict[str, str], *args: str, **kwargs: object) -> subprocess.Popen[str]:
    """``fleetscope lineage ARGS`` as its own process (kill -9 hits it, not the test)."""
    return subprocess.Popen(
        [sys.executable, "-m", "fleetscope.console.cli", "lineage", *args],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def store_env(data_dir: Path) -> dict[str, str]:
    return {
        "FLEETSCOPE_LINEAGE_URI": f"embedded://{data_dir}",
        "FLEETSCOPE_LINEAGE_AUDIT_LOG": str(data_dir / "audit.jsonl"),
        "FLEETSCOPE_LINEAGE_QUARANTINE": str(data_dir / "quarantine.jsonl"),
    }


def assert_graph_agrees_with_verified_log(data_dir: Path) -> Lineage:
    """Open the store as the next command would (replaying what the graph lacks), verify the log's
    chain and check the graph against a replay of the log. Returns the open service."""
    verification = verify_log(data_dir / "audit.jsonl")
    assert verification.ok, verification.problems
    service = Lineage(
        open_store(f"embedded://{data_dir}"), AuditLog(data_dir / "audit.jsonl"), data_dir / "q.jsonl"
    )
    try:
        check = service.check_graph()
        assert check.ok, check.problems
    except BaseException:
        service.close()  # a failing check leaves no server behind
        raise
    return service
