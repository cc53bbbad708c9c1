"""``fleetscope lineage``: record, ingest, queries, audit (table, CSV, JSON), verify, export-log, serve.

The commands run through the full ``fleetscope`` app on the embedded store (a graph of its own in
the session's FalkorDB server); ``serve`` runs as a real process.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner, Result

from fleetscope.console.cli import app
from fleetscope.lineage import QUERIES, AuditLog, Lineage, open_store, verify_log
from tests.lineage.seed import seed
from tests.servers import free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures/openlineage/example_full_event.json"
ROOT = Path(__file__).resolve().parents[2]
T = "T00:00:00.000000Z"


@pytest.fixture
def env(embedded_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Configuration by environment, as a user would set it: a graph of this test's own."""
    return {
        "FLEETSCOPE_LINEAGE_URI": f"embedded://{embedded_dir}?graph=cli-{uuid.uuid4().hex[:8]}",
        "FLEETSCOPE_LINEAGE_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "FLEETSCOPE_LINEAGE_QUARANTINE": str(tmp_path / "quarantine.jsonl"),
    }


@pytest.fixture
def service(env: dict[str, str]) -> Iterator[Lineage]:
    """The same graph and log the commands use, for set-up and checks."""
    lin = Lineage(
        open_store(env["FLEETSCOPE_LINEAGE_URI"]),
        AuditLog(Path(env["FLEETSCOPE_LINEAGE_AUDIT_LOG"])),
        Path(env["FLEETSCOPE_LINEAGE_QUARANTINE"]),
    )
    yield lin
    lin.close()


def fleetscope(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["lineage", *args], env=env)


def test_record_writes_the_node_and_its_links(env: dict[str, str], service: Lineage) -> None:
    result = fleetscope(
        env, "record", "Run", "--id", "run-1",
        "--prop", "job_id=slurm-42", "--prop", "started_at=2024-05-01T08:00:00+02:00",
        "--link", "USED:DatasetVersion:dv-1", "--link", "ran_on:GPU:GPU-0f3c", "--create",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "recorded Run run-1\n"
    rows = service.query(
        "MATCH (r:Run {id: 'run-1'})-[e]->(x) RETURN r.job_id AS job, r.started_at AS at, "
        "type(e) AS rel, x.id AS other ORDER BY rel"
    )
    assert rows == [
        {"job": "slurm-42", "at": "2024-05-01T06:00:00.000000Z", "rel": "RAN_ON", "other": "GPU-0f3c"},
        {"job": "slurm-42", "at": "2024-05-01T06:00:00.000000Z", "rel": "USED", "other": "dv-1"},
    ]


def test_a_link_to_a_node_that_does_not_exist_asks_for_create(env: dict[str, str], service: Lineage) -> None:
    assert fleetscope(env, "record", "DatasetVersion", "--id", "dv-1").exit_code == 0
    result = fleetscope(
        env, "record", "Run", "--id", "run-1", "--link", "USED:DatasetVersion:dv-1",
        "--link", "USED:DatasetVersion:dv-l",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no DatasetVersion 'dv-l' in the graph: check the id, or pass --create to create it\n"
    )
    assert service.query("MATCH (n) WHERE n.id STARTS WITH 'dv' OR n:Run RETURN n.id AS id") == [
        {"id": "dv-1"}
    ]
    assert verify_log(Path(env["FLEETSCOPE_LINEAGE_AUDIT_LOG"])).records == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Run", "--id", "r", "--link", "PRODUCED:Person:p"], "error: Run cannot record PRODUCED to Person"),
        (["Model", "--id", "m", "--prop", "colour=red"], "error: Model has no property 'colour'"),
        (["Run", "--id", "r", "--link", "USED-dv"], "error: a link is REL:Label:id, got 'USED-dv'"),
        (["Robot", "--id", "r"], "error: unknown entity 'Robot'"),
    ],
)
def test_record_refuses_bad_input_and_writes_nothing(
    env: dict[str, str], service: Lineage, args: list[str], message: str
) -> None:
    result = fleetscope(env, "record", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert service.query("MATCH (n) RETURN count(n) AS n") == [{"n": 0}]
    assert Path(env["FLEETSCOPE_LINEAGE_AUDIT_LOG"]).read_text() == ""


def test_ingest_applies_good_lines_and_quarantines_a_bad_one(
    env: dict[str, str], service: Lineage, tmp_path: Path
) -> None:
    good = json.dumps(json.loads(EXAMPLE.read_text()))
    events = tmp_path / "events.jsonl"
    events.write_text(f'{good}\n{{"eventType": "START", "eventTime": "2024-01-01T00:00:00Z"}}\n')
    result = fleetscope(env, "ingest", str(events))
    assert result.exit_code == 1
    assert result.stdout == (
        f"accepted 1, duplicates 0, rejected 1 (quarantine: {env['FLEETSCOPE_LINEAGE_QUARANTINE']})\n"
    )
    assert result.stderr == "  rejected line 2: JobEvent (event): 'producer' is a required property\n"
    quarantined = [
        json.loads(line) for line in Path(env["FLEETSCOPE_LINEAGE_QUARANTINE"]).read_text().splitlines()
    ]
    assert [(q["source"], q["reason"]) for q in quarantined] == [
        (f"{events}:2", "JobEvent (event): 'producer' is a required property")
    ]
    assert service.query("MATCH (r:Run) WHERE r.state IS NOT NULL RETURN r.id AS id") == [
        {"id": "ea041791-68bc-4ae1-bd89-4c8106a157e4"}
    ]


def test_queries_lists_the_pack_with_parameters() -> None:
    result = CliRunner().invoke(app, ["lineage", "queries"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert names == list(QUERIES)
    assert "served_at --param endpoint=... --param at=...\n" in result.stdout
    assert "incident_exposure --param incident=...?\n" in result.stdout


def test_audit_prints_a_table_and_exports_csv_and_json(
    env: dict[str, str], service: Lineage, tmp_path: Path
) -> None:
    seed(service)
    out_csv, out_json = tmp_path / "rows.csv", tmp_path / "rows.json"
    result = fleetscope(
        env, "audit", "served_at", "--param", "endpoint=chat", "--param", "at=2024-02-20T00:00:00Z",
        "--csv", str(out_csv), "--json", str(out_json),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "served_at: 1 row(s)" in result.stdout and "dep-chat-v1" in result.stdout
    expected = {"deployment": "dep-chat-v1", "model": "chat-7b:1", "name": "chat-7b", "version": "1",
                "started_at": f"2024-02-07{T}", "ended_at": f"2024-03-01{T}"}  # fmt: skip
    assert json.loads(out_json.read_text()) == {"query": "served_at", "rows": [expected], "notes": []}
    with out_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == list(QUERIES["served_at"].columns)
        assert list(reader) == [expected]


def test_audit_json_dash_prints_the_rows_instead_of_the_table(
    env: dict[str, str], service: Lineage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(service)
    monkeypatch.chdir(tmp_path)
    result = fleetscope(
        env, "audit", "served_at", "--param", "endpoint=chat", "--param", "at=2024-02-20T00:00:00Z",
        "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"][0]["deployment"] == "dep-chat-v1"
    assert not (tmp_path / "-").exists()


def test_audit_csv_keeps_empty_values_and_column_order(
    env: dict[str, str], service: Lineage, tmp_path: Path
) -> None:
    seed(service)
    out_csv = tmp_path / "unapproved.csv"
    result = fleetscope(env, "audit", "unapproved_deployments", "--csv", str(out_csv))
    assert result.exit_code == 0, result.output
    assert out_csv.read_text().splitlines() == [
        "deployment,endpoint,model,started_at,ended_at",
        f"dep-chat-v2,chat,chat-7b:2,2024-03-01{T},",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_query"], "error: unknown audit query 'no_such_query'"),
        (["served_at", "--param", "endpoint=chat"], "error: served_at needs --param at=..."),
        (["impact", "--param", "id=x", "--param", "colour=red"], "error: impact has no parameter colour"),
    ],
)
def test_audit_refuses_bad_input(env: dict[str, str], args: list[str], message: str) -> None:
    result = fleetscope(env, "audit", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)


def _three_records(env: dict[str, str]) -> Path:
    for node in ("p1", "p2", "p3"):
        assert fleetscope(env, "record", "Person", "--id", node).exit_code == 0
    return Path(env["FLEETSCOPE_LINEAGE_AUDIT_LOG"])


def test_verify_passes_an_untouched_log_and_names_a_tampered_record(env: dict[str, str]) -> None:
    log = _three_records(env)
    clean = fleetscope(env, "verify")
    assert clean.exit_code == 0
    assert clean.stdout.startswith(f"{log}: 3 records, head ")
    assert clean.stdout.splitlines()[0].endswith(": OK")
    assert clean.stdout.splitlines()[1].endswith(": 3 records applied: agrees with the log")
    lines = log.read_text().splitlines()
    lines[1] = lines[1].replace('"id":"p2"', '"id":"mallory"')
    log.write_text("\n".join(lines) + "\n")
    tampered = fleetscope(env, "verify")
    assert tampered.exit_code == 1
    assert tampered.stdout.splitlines()[0] == "edited: record 2 (line 2) does not match its hash"
    assert tampered.stdout.splitlines()[-1].endswith(": TAMPERED")


def test_verify_finds_records_cut_from_the_end_with_the_exported_head(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = _three_records(env)
    exported = tmp_path / "export.json"
    result = fleetscope(env, "export-log", str(exported))
    assert result.exit_code == 0
    document = json.loads(exported.read_text())
    assert (document["format"], document["records"], document["verified"]) == (
        "fleetscope-lineage-audit-log/1", 3, True
    )  # fmt: skip
    assert [entry["data"]["id"] for entry in document["entries"]] == ["p1", "p2", "p3"]
    assert document["head"] == document["entries"][-1]["hash"]
    assert result.stdout == f"wrote {exported}: 3 records, head {document['head']}, verified True\n"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:2]))
    assert fleetscope(env, "verify", "--log-only").exit_code == 0  # a shorter chain is still a chain
    behind = fleetscope(env, "verify")  # but the graph holds a record the log lost
    assert behind.exit_code == 1
    assert "the graph has applied 3 audit records but" in behind.stdout
    cut = fleetscope(env, "verify", "--head", document["head"], "--records", "3")
    assert cut.exit_code == 1
    assert cut.stdout.splitlines()[0].startswith("truncated: the anchor's head hash is not in the log")


def test_export_log_of_a_tampered_log_says_so(env: dict[str, str], tmp_path: Path) -> None:
    log = _three_records(env)
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n")
    result = fleetscope(env, "export-log", str(tmp_path / "export.json"))
    assert result.exit_code == 1
    document = json.loads((tmp_path / "export.json").read_text())
    assert document["verified"] is False
    assert {p["kind"] for p in document["problems"]} >= {"removed", "reordered"}


def test_serve_refuses_a_public_address_without_a_token(env: dict[str, str]) -> None:
    result = fleetscope(env, "serve", "--host", "0.0.0.0", "--port", "0")
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr


def test_serve_takes_its_token_from_the_environment_and_never_prints_it(env: dict[str, str]) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetscope.console.cli", "lineage", "serve", "--port", str(port)],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT), "FLEETSCOPE_LINEAGE_API_KEY": token},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner == (
            f"OpenLineage endpoint on http://127.0.0.1:{port}/api/v1/lineage, bearer token required\n"
        )
        url = f"http://127.0.0.1:{port}/api/v1/lineage"
        refused = requests.post(url, data=EXAMPLE.read_bytes(), timeout=10)
        accepted = requests.post(
            url, data=EXAMPLE.read_bytes(), headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert (refused.status_code, accepted.status_code) == (401, 201)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert token not in banner + out + err


def test_a_store_folder_that_cannot_be_made_is_named_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetscope.console.cli",
            "lineage",
            "record",
            "Run",
            "--id",
            "r1",
            "--store",
            f"embedded://{blocker}/graph",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"fleetscope: error: Not a directory: {blocker}/graph\n"
