"""Store contract, one-statement writes and OpenLineage ingestion, on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetscope.lineage import (
    GraphStore,
    InvalidEvent,
    Lineage,
    LineageError,
    Link,
    ReadOnlyViolation,
    StoreError,
    verify_log,
)
from tests.lineage.conftest import count_graph

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/openlineage"
SPEC_EVENT = Path(__file__).resolve().parents[2] / "fleetscope" / "lineage" / "spec"


def _event(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_record_is_idempotent_and_binds_values(lineage: Lineage) -> None:
    hostile = "x}) DETACH DELETE n // $id"
    if lineage.store.backend == "embedded-falkordb":
        hostile = "x'}) DETACH DELETE n //"
    else:
        with pytest.raises(StoreError, match="single quote"):
            lineage.record("Run", "r0", {"job_name": "x'}) DETACH DELETE n //"})
    for _ in range(2):
        lineage.record("Run", "r1", {"job_name": hostile}, [Link("USED", "DatasetVersion", "dv1")])
    assert count_graph(lineage.store) == (2, 1)
    assert lineage.query("MATCH (r:Run {id: $id}) RETURN r.job_name AS j", {"id": "r1"}) == [{"j": hostile}]


def test_a_refused_write_leaves_nothing(lineage: Lineage) -> None:
    with pytest.raises(LineageError, match="cannot record PRODUCED to Person"):
        lineage.record("Run", "r1", {}, [Link("USED", "Config", "c1"), Link("PRODUCED", "Person", "p")])
    with pytest.raises(LineageError, match="has no property"):
        lineage.record("Model", "m1", {"colour": "red"})
    assert count_graph(lineage.store) == (0, 0)


def test_read_only_session_refuses_writes(store: GraphStore) -> None:
    store.write("MERGE (n:Run {id: $id}) RETURN n.id AS id", {"id": "r1"})
    with pytest.raises(ReadOnlyViolation):
        store.read("CREATE (n:Run {id: 'evil'}) RETURN n.id AS id")
    assert count_graph(store) == (1, 0)


def test_valid_openlineage_event_is_mapped(lineage: Lineage) -> None:
    lineage.ingest(_event("example_full_event.json"))
    rows = lineage.query("MATCH (r:Run) RETURN r.id AS id, r.state AS state, r.job_name AS job")
    assert rows == [
        {"id": "ea041791-68bc-4ae1-bd89-4c8106a157e4", "state": "COMPLETE", "job": "myjob.mytask"}
    ]
    assert lineage.stats.accepted == 1


def test_broken_event_leaves_the_graph_unchanged(lineage: Lineage, tmp_path: Path) -> None:
    lineage.ingest(_event("example_full_event.json"))
    before = count_graph(lineage.store)
    event = json.loads(_event("example_full_event.json"))
    event["run"]["runId"] = "5f3e0a52-0f8e-4c5b-9a43-0d6f1b7c2e11"
    event["inputs"] = [{"namespace": "s3://b", "name": "t", "facets": {"schema": {
        "_producer": "p", "_schemaURL": "https://x", "fields": [{"name": 7}]}}}]  # fmt: skip
    with pytest.raises(InvalidEvent, match=r"inputs\[0\]\.facets\.schema"):
        lineage.ingest(json.dumps(event))
    with pytest.raises(InvalidEvent, match="not JSON"):
        lineage.ingest("{nope")
    assert count_graph(lineage.store) == before
    quarantined = [json.loads(line) for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert [q["reason"].split(":")[0] for q in quarantined] == [
        "inputs[0].facets.schema/fields/0/name",
        "not JSON",
    ]
    assert lineage.stats.rejected == 2
    assert verify_log(lineage.log.path).records == 1


def test_ingest_file_counts_good_and_bad_lines(lineage: Lineage, tmp_path: Path) -> None:
    good = json.dumps(json.loads(_event("serde_example_run_event.json")))
    events = tmp_path / "events.jsonl"
    events.write_text(f'{good}\n{{"eventType": "START"}}\n\n')
    stats = lineage.ingest_file(events)
    assert (stats.accepted, stats.rejected) == (1, 1)
    assert "line 2: JobEvent (event): 'eventTime' is a required property" in stats.reasons
