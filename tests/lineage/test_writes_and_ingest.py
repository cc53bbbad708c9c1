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
from tests.lineage.crashkit import PRODUCER, pipeline_file, run_event

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


def test_valid_openlineage_event_is_mapped(embedded_lineage: Lineage) -> None:
    embedded_lineage.ingest(_event("example_full_event.json"))
    rows = embedded_lineage.query(
        "MATCH (r:Run)-[:CHILD_OF]->(p:Run) RETURN r.id AS id, r.state AS state, r.job_name AS job, "
        "p.id AS parent, p.job_name AS parent_job"
    )
    # The parent facet names the DAG run this task ran in.
    assert rows == [
        {"id": "ea041791-68bc-4ae1-bd89-4c8106a157e4", "state": "COMPLETE", "job": "myjob.mytask",
         "parent": "3f5e83fa-3480-44ff-99c5-ff943904e5e8", "parent_job": "myjob.mytask"}
    ]  # fmt: skip
    assert embedded_lineage.stats.accepted == 1


def test_broken_event_leaves_the_graph_unchanged(embedded_lineage: Lineage, tmp_path: Path) -> None:
    embedded_lineage.ingest(_event("example_full_event.json"))
    before = count_graph(embedded_lineage.store)
    event = json.loads(_event("example_full_event.json"))
    event["run"]["runId"] = "not-a-uuid"
    with pytest.raises(InvalidEvent, match=r"run/runId"):
        embedded_lineage.ingest(json.dumps(event))
    with pytest.raises(InvalidEvent, match="not JSON"):
        embedded_lineage.ingest("{nope")
    assert count_graph(embedded_lineage.store) == before
    quarantined = [json.loads(line) for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert [q["reason"].split(":")[0] for q in quarantined] == ["RunEvent run/runId", "not JSON"]
    assert embedded_lineage.stats.rejected == 2
    assert verify_log(embedded_lineage.log.path).records == 1


def test_a_facet_of_an_older_shape_is_set_aside_and_the_event_kept(embedded_lineage: Lineage) -> None:
    event = json.loads(_event("old_dq_metrics_facet_event.json"))
    event["inputs"][0]["facets"]["schema"] = {
        "_producer": "p", "_schemaURL": "https://x", "fields": [{"name": 7}]}  # fmt: skip
    embedded_lineage.ingest(json.dumps(event))
    record = json.loads(embedded_lineage.log.path.read_text().splitlines()[-1])
    assert [s["path"] for s in record["data"]["set_aside"]] == [
        "inputs[0].facets.schema",
        "inputs[0].inputFacets.dataQualityMetrics",
    ]
    assert "dataQualityMetrics" not in record["data"]["event"]["inputs"][0]["inputFacets"]
    rows = embedded_lineage.query("MATCH (r:Run)-[:USED]->(v:DatasetVersion) RETURN r.id AS r, v.id AS v")
    assert rows == [{"r": "ea041791-68bc-4ae1-bd89-4c8106a157e4", "v": rows[0]["v"]}]


def test_ingest_file_counts_good_and_bad_lines(embedded_lineage: Lineage, tmp_path: Path) -> None:
    good = json.dumps(json.loads(_event("serde_example_run_event.json")))
    events = tmp_path / "events.jsonl"
    events.write_text(f'{good}\n{{"eventType": "START"}}\n\n')
    stats = embedded_lineage.ingest_file(events)
    assert (stats.accepted, stats.rejected) == (1, 1)
    assert "line 2: JobEvent (event): 'eventTime' is a required property" in stats.reasons


def test_openlineage_events_go_in_over_every_backend(lineage: Lineage, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = pipeline_file(events, 8)
    stats = lineage.ingest_file(events)
    assert (stats.accepted, stats.rejected) == (len(lines), 0), stats.reasons
    finished = lineage.query("MATCH (r:Run) WHERE r.state = 'COMPLETE' RETURN count(r) AS c")
    assert finished == [{"c": len(lines) // 2}]
    walk = lineage.audit("impact", {"id": "s3://b|d0@unversioned"})
    assert max(row["depth"] for row in walk) == len(lines)


def test_an_event_too_long_for_falkordbs_bolt_listener_is_refused_and_the_server_lives(
    lineage: Lineage,
) -> None:
    schema = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
        "fields": [{"name": f"column_{i}", "type": "string"} for i in range(60)],
    }
    wide = run_event("00000000-0000-4000-8000-000000000001", "COMPLETE", [], ["wide"])
    wide["outputs"][0]["facets"] = {"schema": schema}
    small = run_event("00000000-0000-4000-8000-000000000002", "COMPLETE", ["wide"], [])
    first = lineage.ingest(json.dumps(wide))
    second = lineage.ingest(json.dumps(small))
    assert second.accepted == 1 and lineage.query("RETURN 1 AS alive") == [{"alive": 1}]
    if lineage.store.backend == "embedded-falkordb":
        assert first.accepted == 1
    else:  # FalkorDB's Bolt listener: refused before it is sent, logged as refused, quarantined
        assert first.rejected == 1 and "crashes its Bolt listener" in lineage.stats.reasons[-1]
        ops = [json.loads(line)["op"] for line in lineage.log.path.read_text().splitlines()]
        assert ops == ["openlineage", "refused", "openlineage"]
    assert lineage.query("MATCH (r:Run) RETURN count(r) AS c") == [{"c": 1 + first.accepted}]
