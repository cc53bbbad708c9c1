"""``fleetscope incidents list|show|resolve`` over a real SQLite store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from fleetscope.collectors.incidents import IncidentStore
from fleetscope.console.cli import app
from tests.collectors.test_incidents import _report


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["incidents", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def _store(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "incidents.db"
    store = IncidentStore(path)
    t0 = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    first = store.record(_report("node-01", 1), now=t0)
    second = store.record(_report("node-02", 4), now=t0 + timedelta(hours=2))
    assert first is not None and second is not None
    store.resolve_quiet(timedelta(minutes=10), now=t0 + timedelta(hours=1))
    store.close()
    return path, first.incident.fingerprint, second.incident.fingerprint


def test_list_shows_open_incidents_by_default_and_all_on_request(tmp_path: Path) -> None:
    path, resolved, still_open = _store(tmp_path)
    code, out, _ = _run("list", "--store", str(path))
    assert code == 0
    assert still_open[:8] in out and "node-02" in out and resolved[:8] not in out
    code, out, _ = _run("list", "--state", "all", "--json", "--store", str(path))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["state"]) for r in rows] == [(still_open, "open"), (resolved, "resolved")]
    assert rows[1]["resolved_by"] == "quiet"


def test_show_and_resolve_by_id_prefix(tmp_path: Path) -> None:
    path, _, still_open = _store(tmp_path)
    code, out, _ = _run("show", still_open[:5], "--store", str(path))
    assert code == 0
    assert out.startswith(f"incident {still_open}: open, first seen 2026-05-06T09:08:09+00:00")
    assert "GPU 4 on node-02 fell off the bus" in out
    code, out, _ = _run("resolve", still_open[:5], "--by", "alice", "--store", str(path))
    assert (code, out) == (0, f"resolved incident {still_open}: GPU 4 on node-02 fell off the bus (Xid 79)\n")
    code, out, _ = _run("show", still_open, "--json", "--store", str(path))
    shown = json.loads(out)
    assert (shown["state"], shown["resolved_by"]) == ("resolved", "alice")
    assert shown["report"]["root_causes"][0]["node"] == "node-02"
    assert _run("list", "--store", str(path))[1] == "no open incidents\n"


def test_unknown_ids_and_missing_stores_get_one_line(tmp_path: Path) -> None:
    path, resolved, _ = _store(tmp_path)
    assert _run("show", "zzzz", "--store", str(path)) == (
        1,
        "",
        "fleetscope incidents show: no incident 'zzzz'\n",
    )
    code, _, err = _run("resolve", resolved, "--store", str(path))
    assert (code, err) == (1, f"fleetscope incidents resolve: incident {resolved} is already resolved\n")
    code, _, err = _run("list", "--store", str(tmp_path / "none.db"))
    assert code == 1 and err.startswith("fleetscope incidents: no incident store at ")
