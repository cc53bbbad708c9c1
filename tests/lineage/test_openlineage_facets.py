"""OpenLineage facets and runs kept whole: facets merged by name, input/output facets on the run's
edge, parent runs, symlinks, ownership, a late version facet, run ids in any case, dataset ids that
cannot collide. Events from the lineage probes (tests/fixtures/openlineage/SOURCES.txt) and made up
here, on the embedded store (see ``embedded_lineage`` in conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleetscope.lineage import Lineage
from fleetscope.lineage.openlineage import dataset_id, facet_property, version_id
from tests.lineage.crashkit import PRODUCER, run_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/openlineage"
RUN = "44444444-4444-4444-8444-444444444401"


def facet(**fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/X.json", **fields}


def test_facets_from_earlier_events_are_kept(embedded_lineage: Lineage) -> None:
    assert embedded_lineage.ingest_file(FIXTURES / "probe_facets_overwritten.jsonl").accepted == 3
    run = embedded_lineage.query(
        "MATCH (r:Run {id: '22222222-2222-4222-8222-222222222201'}) "
        "RETURN r.facet_parent AS parent, r.facet_nominalTime AS nominal, r.state AS state"
    )[0]
    assert run["state"] == "COMPLETE" and run["parent"] and run["nominal"]  # START's parent survives
    assert json.loads(run["parent"])["run"]["runId"] == "22222222-2222-4222-8222-222222222200"
    parent = embedded_lineage.query(
        "MATCH (:Run {id: '22222222-2222-4222-8222-222222222201'})-[:CHILD_OF]->(p:Run) "
        "RETURN p.id AS id, p.job_name AS job"
    )
    assert parent == [{"id": "22222222-2222-4222-8222-222222222200", "job": "etl_dag"}]
    version = embedded_lineage.query(
        "MATCH (v:DatasetVersion) RETURN v.facet_schema AS schema, v.facet_dataSource AS source"
    )
    assert len(version) == 1  # the schema from the first event, the data source from the third
    assert [f["name"] for f in json.loads(version[0]["schema"])["fields"]] == ["id", "email"]
    assert json.loads(version[0]["source"])["name"] == "db"


def test_input_and_output_facets_live_on_the_runs_edge(embedded_lineage: Lineage) -> None:
    event = run_event(RUN, "COMPLETE", ["in"], ["out"])
    event["inputs"][0]["inputFacets"] = {"custom_input": facet(rows=7)}
    event["outputs"][0]["outputFacets"] = {"outputStatistics": facet(rowCount=42, size=1024)}
    embedded_lineage.ingest(json.dumps(event))
    rows = embedded_lineage.query(
        "MATCH (r:Run)-[e]->(v:DatasetVersion) RETURN type(e) AS rel, properties(e) AS p ORDER BY rel"
    )
    assert [row["rel"] for row in rows] == ["PRODUCED", "USED"]
    assert json.loads(rows[0]["p"][facet_property("facet_", "outputStatistics")])["rowCount"] == 42
    assert json.loads(rows[1]["p"]["facet_custom_5finput"])["rows"] == 7


def test_symlinks_and_ownership_become_relationships(embedded_lineage: Lineage) -> None:
    event = run_event(RUN, "COMPLETE", [], ["public.orders"])
    event["outputs"][0]["facets"] = {
        "symlinks": facet(
            identifiers=[{"namespace": "hive://meta", "name": "warehouse.orders", "type": "TABLE"}]
        ),
        "ownership": facet(owners=[{"name": "team:payments", "type": "TEAM"}]),
    }
    embedded_lineage.ingest(json.dumps(event))
    alias = embedded_lineage.query("MATCH (d:Dataset)-[:ALIAS_OF]->(a:Dataset) RETURN d.id AS d, a.id AS a")
    assert alias == [{"d": "s3://b|public.orders", "a": "hive://meta|warehouse.orders"}]
    owners = embedded_lineage.query("MATCH (:Dataset)-[:OWNED_BY]->(p:Person) RETURN p.id AS id")
    assert owners == [{"id": "team:payments"}]


def test_a_late_version_facet_moves_the_output_to_that_version(embedded_lineage: Lineage) -> None:
    embedded_lineage.ingest(json.dumps(run_event(RUN, "START", [], ["model-data"])))
    complete = run_event(RUN, "COMPLETE", [], ["model-data"])
    complete["outputs"][0]["facets"] = {"version": facet(datasetVersion="v5")}
    embedded_lineage.ingest(json.dumps(complete))
    rows = embedded_lineage.query("MATCH (r:Run)-[:PRODUCED]->(v:DatasetVersion) RETURN v.id AS id")
    assert rows == [{"id": "s3://b|model-data@v5"}]
    assert embedded_lineage.query("MATCH (v:DatasetVersion) RETURN count(v) AS c") == [{"c": 1}]


def test_run_ids_are_compared_without_case(embedded_lineage: Lineage) -> None:
    assert embedded_lineage.ingest_file(FIXTURES / "probe_runid_case.jsonl").accepted == 2
    rows = embedded_lineage.query("MATCH (r:Run) RETURN r.id AS id, r.state AS state")
    assert rows == [{"id": "3f5e83fa-3480-44ff-99c5-ff943904e5e8", "state": "COMPLETE"}]


def test_dataset_ids_cannot_collide(embedded_lineage: Lineage) -> None:
    assert embedded_lineage.ingest_file(FIXTURES / "probe_id_collision.jsonl").accepted == 2
    rows = embedded_lineage.query("MATCH (d:Dataset) RETURN d.namespace AS ns, d.name AS name ORDER BY ns")
    assert rows == [
        {"ns": "kafka://broker", "name": "9092:orders"},
        {"ns": "kafka://broker:9092", "name": "orders"},
    ]
    pairs = [("a|b", "c"), ("a", "b|c"), ("a%7Cb", "c"), ("a", "b@1"), ("a", "b")]
    ids = {dataset_id(ns, name) for ns, name in pairs}
    assert len(ids) == len(pairs)
    versions = {version_id("d", v) for v in (None, "unversioned", "1@x", "1%40x", "")} | {
        version_id("d@1", "x")
    }
    assert len(versions) == 5  # None and "" both mean unversioned


def test_provenance_starts_from_a_dataset_and_impact_follows_every_stage(embedded_lineage: Lineage) -> None:
    # The probe's 14-stage pipeline: 13 derived datasets and a training run, 28 hops.
    for stage in range(1, 14):
        event = run_event(
            f"00000000-0000-4000-8000-{stage:012d}", "COMPLETE", [f"d{stage - 1}"], [f"d{stage}"]
        )
        embedded_lineage.ingest(json.dumps(event))
    impact = embedded_lineage.audit("impact", {"id": "s3://b|d0@unversioned"})
    assert impact.notes == [] and impact[-1]["id"] == "s3://b|d13@unversioned"  # type: ignore[attr-defined]
    assert impact[-1]["depth"] == 26
    provenance = embedded_lineage.audit("provenance", {"id": "s3://b|d13"})  # a Dataset
    assert provenance[-1]["id"] == "s3://b|d0" and provenance[-1]["label"] == "Dataset"
