"""The crash-test suite: kill -9 at random points of a long ingest (of the command and of the graph
server), commands and writers at the same time, a torn log, hostile ids and lines. Every test ends
with a verified log and a graph that agrees with it (:func:`assert_graph_agrees_with_verified_log`).

The random kill points come from a seeded generator; a failure prints the seed
(``FLEETSCOPE_CRASH_SEED`` replays it).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path

import falkordb
import pytest

from fleetscope.lineage import AuditLog, Lineage, Link, StoreError, verify_log
from fleetscope.lineage.schema import node_key
from fleetscope.lineage.service import LogMismatch
from fleetscope.lineage.store.embedded import EmbeddedStore
from tests.lineage.crashkit import (
    assert_graph_agrees_with_verified_log,
    fleetscope,
    pipeline_file,
    run_event,
    store_env,
)

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/openlineage"

# Every shape of id the OpenLineage spec allows for a name (any JSON string): blanks at either
# end, over FalkorDB's 4,096-byte constraint limit, control characters, quotes of every kind,
# backslashes, non-ASCII, line separators, the separators of our own ids, an escaped NUL as text.
HOSTILE_IDS = [
    "chat ",
    " chat",
    "  ",
    "L" * 4096,
    "L" * 4097,
    "L" * 1_000_000,
    "tab\there",
    "new\nline\r\n",
    "q'\"`x",
    "b\\s\\",
    "é中🙂 ",
    "\u2028\u2029\ufeff",
    "%|@:;",
    "\\u0000",
    "x}) DETACH DELETE n //",
]


def server_pid(data_dir: Path) -> int:
    client = falkordb.FalkorDB(unix_socket_path=str(data_dir / "falkordb.sock"))
    try:
        return int(client.connection.info("server")["process_id"])
    finally:
        client.connection.close()


def server_alive(data_dir: Path) -> bool:
    """Whether a process holds the data folder's server lock (the server's own liveness)."""
    if not data_dir.exists():
        return False  # the command has not got as far as its data folder yet (a loaded machine)
    fd = os.open(data_dir / "server.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def open_service(data_dir: Path) -> Lineage:
    return Lineage(EmbeddedStore(data_dir), AuditLog(data_dir / "audit.jsonl"), data_dir / "q.jsonl")


@pytest.mark.parametrize("node_id", HOSTILE_IDS, ids=lambda text: repr(text[:12]) + f"/{len(text)}")
def test_every_id_shape_is_kept_as_given_and_the_server_lives(
    embedded_lineage: Lineage, node_id: str
) -> None:
    embedded_lineage.record("Model", node_id, {"name": node_id})
    embedded_lineage.record("Run", "r", {}, [Link("PRODUCED", "Model", node_id)])
    rows = embedded_lineage.query(
        "MATCH (r:Run)-[:PRODUCED]->(m:Model {key: $key}) RETURN m.id AS id, m.name AS name",
        {"key": node_key(node_id)},
    )
    assert rows == [{"id": node_id, "name": node_id}]
    provenance = embedded_lineage.audit("provenance", {"id": node_id})
    assert [(row["label"], row["id"]) for row in provenance] == [("Run", "r")]
    assert embedded_lineage.query("RETURN 1 AS alive") == [{"alive": 1}]


def test_a_nul_in_an_id_is_refused_logged_as_refused_and_the_graph_agrees(tmp_path: Path) -> None:
    data = tmp_path / "store"
    service = open_service(data)
    try:
        service.record("Model", "before")
        with pytest.raises(StoreError):
            service.record("Model", "nul\x00inside")
        service.record("Model", "after")
    finally:
        service.close()
    ops = [json.loads(line)["op"] for line in (data / "audit.jsonl").read_text().splitlines()]
    assert ops == ["record", "record", "refused", "record"]
    assert_graph_agrees_with_verified_log(data).close()


def test_openlineage_names_with_blanks_are_ingested_by_the_command(tmp_path: Path) -> None:
    data = tmp_path / "store"
    process = fleetscope(store_env(data), "ingest", str(FIXTURES / "probe_ol_trailing_space_dataset.jsonl"))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert out.startswith("accepted 2, duplicates 0, rejected 0")
    assert not server_alive(data)  # the command stopped the server it started
    service = assert_graph_agrees_with_verified_log(data)
    try:
        names = service.query("MATCH (d:Dataset) RETURN d.name AS name ORDER BY name")
        assert {row["name"] for row in names} >= {"public.orders "}
    finally:
        service.close()


def test_a_killed_server_is_replaced_and_its_stale_socket_removed(tmp_path: Path) -> None:
    data = tmp_path / "store"
    service = open_service(data)
    service.record("Model", "m1")
    os.kill(server_pid(data), signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(StoreError, match="went away"):
        service.record("Model", "m2")  # the graph is gone: said, and nothing is logged
    service.close()
    assert (data / "falkordb.sock").exists() and not server_alive(data)
    again = assert_graph_agrees_with_verified_log(data)
    try:
        again.record("Model", "m2")
        models = again.query("MATCH (m:Model) RETURN m.id AS id ORDER BY id")
        assert models == [{"id": "m1"}, {"id": "m2"}]
    finally:
        again.close()
    assert not server_alive(data)


def test_commands_started_together_share_one_server_and_leave_none(tmp_path: Path) -> None:
    data = tmp_path / "store"
    processes = [fleetscope(store_env(data), "record", "Model", "--id", f"m{i}") for i in range(6)]
    results = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in processes]
    assert [code for code, _ in results] == [0] * 6, results
    assert not server_alive(data)
    service = assert_graph_agrees_with_verified_log(data)
    try:
        assert service.query("MATCH (m:Model) RETURN count(m) AS c") == [{"c": 6}]
    finally:
        service.close()
    assert verify_log(data / "audit.jsonl").records == 6


def test_serve_on_a_busy_port_fails_naming_it_and_leaves_no_server(tmp_path: Path) -> None:
    data = tmp_path / "store"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = fleetscope(store_env(data), "serve", "--port", str(port))
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert not server_alive(data)


def test_sigterm_while_serve_opens_its_store_leaves_no_server(tmp_path: Path) -> None:
    # A store large enough that opening it (load, replay) takes a while: SIGTERM lands in it.
    data = tmp_path / "store"
    events = tmp_path / "events.jsonl"
    pipeline_file(events, 400)
    assert fleetscope(store_env(data), "ingest", str(events)).wait(300) == 0
    (data / "audit.jsonl").rename(tmp_path / "audit.jsonl")
    (data / "appendonlydir").rename(tmp_path / "appendonlydir")  # the graph is lost: all replayed
    (tmp_path / "audit.jsonl").rename(data / "audit.jsonl")
    seed = int(os.environ.get("FLEETSCOPE_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = fleetscope(store_env(data), "serve", "--port", str(port))
    deadline = time.monotonic() + 120
    while not server_alive(data) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.5))
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    orphan = server_alive(data)
    if orphan:
        os.kill(server_pid(data), signal.SIGKILL)  # the suite leaves no server behind
    assert not orphan, f"seed {seed}: the server outlived the command"
    assert_graph_agrees_with_verified_log(data).close()


def test_kill_9_at_random_points_of_a_long_ingest_loses_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("FLEETSCOPE_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    data = tmp_path / "store"
    events = tmp_path / "events.jsonl"
    lines = pipeline_file(events, 2000)
    env = store_env(data)
    for attempt in range(4):
        process = fleetscope(env, "ingest", str(events))
        time.sleep(rng.uniform(0.5, 2.0))
        if attempt == 2 and server_alive(data):
            os.kill(server_pid(data), signal.SIGKILL)  # the graph server dies, not the command
            process.wait(120)
        else:
            process.kill()  # kill -9 of the command
            process.wait(120)
    final = fleetscope(env, "ingest", str(events))
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, f"seed {seed}: {err}"
    service = assert_graph_agrees_with_verified_log(data)
    try:
        logged = [
            json.loads(line)
            for line in (data / "audit.jsonl").read_text().splitlines()
            if '"openlineage"' in line
        ]
        events_logged = [r for r in logged if r["op"] == "openlineage"]
        assert len(events_logged) == len(lines), f"seed {seed}: each event logged once"
        runs = service.query("MATCH (r:Run) WHERE r.state = 'COMPLETE' RETURN count(r) AS c")
        assert runs == [{"c": len(lines) // 2}], f"seed {seed}"
        walk = service.audit("impact", {"id": "s3://b|d0@unversioned"})
        assert max(row["depth"] for row in walk) == len(lines)  # the whole chain, no cut
    finally:
        service.close()
    assert not server_alive(data)


def test_a_torn_last_line_is_set_aside_with_a_record_saying_so(tmp_path: Path) -> None:
    data = tmp_path / "store"
    service = open_service(data)
    service.record("Model", "m1")
    service.close()
    torn = b'{"at":"2024-05-01T10:00:00.000000Z","data":{"id":"m2","label":"Mo'
    with open(data / "audit.jsonl", "ab") as handle:
        handle.write(torn)  # a crash, or a full disk, in the middle of an append
    service = open_service(data)
    service.record("Model", "m3")
    service.close()
    records = [json.loads(line) for line in (data / "audit.jsonl").read_text().splitlines()]
    assert [r["op"] for r in records] == ["record", "torn_tail", "record"]
    assert records[1]["data"]["bytes"] == len(torn)
    assert (data / "audit.jsonl.torn").read_bytes() == torn + b"\n"
    assert_graph_agrees_with_verified_log(data).close()


def test_concurrent_writers_share_one_log_in_one_order(tmp_path: Path) -> None:
    data = tmp_path / "store"
    files = []
    for seed in (1, 2):
        path = tmp_path / f"events{seed}.jsonl"
        pipeline_file(path, 400, seed=seed)
        files.append(path)
    service = open_service(data)
    try:
        commands = [fleetscope(store_env(data), "ingest", str(path)) for path in files]
        threads = [
            threading.Thread(target=lambda i=i: [service.record("Model", f"t{i}-{j}") for j in range(30)])
            for i in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [c.wait(300) for c in commands] == [0, 0]
    finally:
        service.close()
    checked = assert_graph_agrees_with_verified_log(data)
    try:
        assert checked.query("MATCH (r:Run {state: 'COMPLETE'}) RETURN count(r) AS c") == [{"c": 400}]
        assert checked.query("MATCH (m:Model) RETURN count(m) AS c") == [{"c": 90}]
    finally:
        checked.close()


def test_ingest_keeps_going_past_every_kind_of_bad_line(tmp_path: Path) -> None:
    data = tmp_path / "store"
    good = [
        json.dumps(run_event(f"00000000-0000-4000-8000-00000000000{i}", "COMPLETE", [], [f"o{i}"]))
        for i in (1, 2)
    ]
    # Valid JSON and OpenLineage, but FalkorDB cannot take a NUL in a parameter: the store refuses it.
    refused = run_event("00000000-0000-4000-8000-000000000003", "COMPLETE", [], ["o\u00003"])
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"\n".join(
            [
                good[0].encode(),
                b'{"eventType": "START", "name": "\xff\xfe"}',
                b"[" * 100_000 + b"]" * 100_000,
                b'{"eventType": "\x00START"}',
                json.dumps(refused).encode(),
                good[1].encode(),
            ]
        )
        + b"\n"
    )
    process = fleetscope(store_env(data), "ingest", str(events))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert out.startswith("accepted 2, duplicates 0, rejected 4")
    reasons = err.splitlines()
    assert [line.split(":")[0].strip() for line in reasons[:3]] == [
        "rejected line 2",
        "rejected line 3",
        "rejected line 4",
    ]
    assert "nested too deep" in reasons[1]
    assert f"{events}:5: the graph store refused it" in reasons[3]
    quarantined = [json.loads(line) for line in (data / "quarantine.jsonl").read_text().splitlines()]
    assert [q["source"] for q in quarantined] == [f"{events}:{n}" for n in (2, 3, 4, 5)]
    assert_graph_agrees_with_verified_log(data).close()


def test_rebuild_recreates_the_graph_and_reingesting_logs_no_duplicates(tmp_path: Path) -> None:
    data = tmp_path / "store"
    events = tmp_path / "events.jsonl"
    lines = pipeline_file(events, 200)
    env = store_env(data)
    assert fleetscope(env, "ingest", str(events)).wait(120) == 0
    records = verify_log(data / "audit.jsonl").records
    again = fleetscope(env, "ingest", str(events))
    out, _ = again.communicate(timeout=120)
    assert out.startswith(f"accepted 0, duplicates {len(lines)}, rejected 0")
    assert verify_log(data / "audit.jsonl").records == records
    rebuild = fleetscope(env, "rebuild")
    out, err = rebuild.communicate(timeout=120)
    assert rebuild.returncode == 0, err
    assert out == f"rebuilt embedded://{data} from {records} records of {data / 'audit.jsonl'}\n"
    verify = fleetscope(env, "verify")
    out, _ = verify.communicate(timeout=120)
    assert verify.returncode == 0 and out.splitlines()[-1].endswith("agrees with the log"), out
    assert_graph_agrees_with_verified_log(data).close()


def test_an_exported_anchor_stays_usable_as_the_log_grows(tmp_path: Path) -> None:
    data = tmp_path / "store"
    env = store_env(data)
    assert fleetscope(env, "record", "Model", "--id", "m1").wait(60) == 0
    export = tmp_path / "export.json"
    assert fleetscope(env, "export-log", str(export)).wait(60) == 0
    head = json.loads(export.read_text())["head"]
    assert fleetscope(env, "record", "Model", "--id", "m2").wait(60) == 0
    verify = fleetscope(env, "verify", "--head", head, "--records", "1", "--log-only")
    out, _ = verify.communicate(timeout=60)
    assert verify.returncode == 0
    assert out.endswith(": OK\n") and "2 records, 1 appended since the anchor" in out
    wrong = fleetscope(env, "verify", "--head", head, "--records", "2", "--log-only")
    out, _ = wrong.communicate(timeout=60)
    assert wrong.returncode == 1 and "the anchor's head is record 1, but the anchor covers 2" in out


def test_a_graph_ahead_of_its_log_refuses_writes_until_rebuilt(tmp_path: Path) -> None:
    data = tmp_path / "store"
    service = open_service(data)
    for name in ("m1", "m2", "m3"):
        service.record("Model", name)
    service.close()
    log = data / "audit.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:2]))  # the last record cut away
    service = open_service(data)
    try:
        assert service.out_of_step and "applied 3 audit records" in service.out_of_step
        assert len(service.query("MATCH (m:Model) RETURN m.id AS id")) == 3  # reads still answer
        with pytest.raises(LogMismatch):
            service.record("Model", "m4")
        assert not service.check_graph().ok
        assert service.rebuild() == 2
        service.record("Model", "m4")
        assert service.query("MATCH (m:Model) RETURN m.id AS id ORDER BY id") == [
            {"id": "m1"},
            {"id": "m2"},
            {"id": "m4"},
        ]
    finally:
        service.close()
    assert_graph_agrees_with_verified_log(data).close()
