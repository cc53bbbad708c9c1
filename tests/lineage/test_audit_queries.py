"""The audit query pack returns exactly the expected rows on the seeded graph, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from fleetscope.lineage import QUERIES, Lineage, LineageError, Link
from tests.lineage.seed import seed

T = "T00:00:00.000000Z"


@pytest.fixture
def seeded(lineage: Lineage) -> Lineage:
    seed(lineage)
    return lineage


def walk(*rows: tuple[int, str, str, str, str, str]) -> list[dict[str, Any]]:
    keys = ("depth", "label", "id", "relation", "from_label", "from_id")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def test_provenance_of_a_deployment(seeded: Lineage) -> None:
    assert seeded.audit("provenance", {"id": "dep-chat-v1", "label": "Deployment"}) == walk(
        (1, "Model", "chat-7b:1", "SERVES", "Deployment", "dep-chat-v1"),
        (2, "Approval", "appr-chat", "APPROVED", "Model", "chat-7b:1"),
        (2, "Evaluation", "eval-chat-mmlu", "EVALUATED", "Model", "chat-7b:1"),
        (2, "Model", "base-7b:1", "DERIVED_FROM", "Model", "chat-7b:1"),
        (2, "Run", "run-ft", "PRODUCED", "Model", "chat-7b:1"),
        (3, "Approval", "appr-base-rejected", "APPROVED", "Model", "base-7b:1"),
        (3, "Config", "cfg-ft", "USED", "Run", "run-ft"),
        (3, "DatasetVersion", "dv-chat-3", "USED", "Run", "run-ft"),
        (3, "DatasetVersion", "dv-eval-1", "USED", "Evaluation", "eval-chat-mmlu"),
        (3, "GPU", "gpu-a", "RAN_ON", "Run", "run-ft"),
        (3, "Person", "alice", "GAVE", "Approval", "appr-chat"),
        (3, "Run", "run-pre2", "PRODUCED", "Model", "base-7b:1"),
        (4, "Checkpoint", "ckpt-pre-1000", "USED", "Run", "run-pre2"),
        (4, "Dataset", "ds-chat", "VERSION_OF", "DatasetVersion", "dv-chat-3"),
        (4, "Dataset", "ds-eval", "VERSION_OF", "DatasetVersion", "dv-eval-1"),
        (4, "DatasetVersion", "dv-web-1", "USED", "Run", "run-pre2"),
        (4, "GPU", "gpu-b", "RAN_ON", "Run", "run-pre2"),
        (4, "Person", "bob", "GAVE", "Approval", "appr-base-rejected"),
        (5, "Dataset", "ds-web", "VERSION_OF", "DatasetVersion", "dv-web-1"),
        (5, "Run", "run-pre", "PRODUCED", "Checkpoint", "ckpt-pre-1000"),
        (6, "Code", "code-abc", "USED", "Run", "run-pre"),
        (6, "Config", "cfg-pre", "USED", "Run", "run-pre"),
        (6, "Host", "h1", "RAN_ON", "Run", "run-pre"),
    )


def test_provenance_depth_limit_and_unknown_start(seeded: Lineage) -> None:
    rows = seeded.audit("provenance", {"id": "chat-7b:2", "max_depth": "1"})
    assert rows == walk((1, "Model", "chat-7b:1", "DERIVED_FROM", "Model", "chat-7b:2"))
    # The cut is said, with where it happened.
    assert len(rows.notes) == 1 and rows.notes[0].startswith("stopped at max_depth=1: ")  # type: ignore[attr-defined]
    assert "from the 1 node(s) at depth 1" in rows.notes[0]  # type: ignore[attr-defined]
    assert seeded.audit("provenance", {"id": "chat-7b:2"}).notes == []  # type: ignore[attr-defined]
    with pytest.raises(LineageError, match="provenance: nothing with id 'no-such-model' in the graph"):
        seeded.audit("provenance", {"id": "no-such-model"})
    with pytest.raises(LineageError, match="no Deployment with id 'chat-7b:2'"):
        seeded.audit("provenance", {"id": "chat-7b:2", "label": "Deployment"})


def test_impact_of_a_dataset_version_reaches_fine_tunes_and_deployments(seeded: Lineage) -> None:
    assert seeded.audit("impact", {"id": "dv-web-1"}) == walk(
        (1, "Run", "run-pre", "USED", "DatasetVersion", "dv-web-1"),
        (1, "Run", "run-pre2", "USED", "DatasetVersion", "dv-web-1"),
        (2, "Checkpoint", "ckpt-pre-1000", "PRODUCED", "Run", "run-pre"),
        (2, "Model", "base-7b:1", "PRODUCED", "Run", "run-pre2"),
        (3, "Model", "chat-7b:1", "DERIVED_FROM", "Model", "base-7b:1"),
        (3, "Model", "code-7b:1", "DERIVED_FROM", "Model", "base-7b:1"),
        (4, "Deployment", "dep-chat-v1", "SERVES", "Model", "chat-7b:1"),
        (4, "Deployment", "dep-code", "SERVES", "Model", "code-7b:1"),
        (4, "Model", "chat-7b:2", "DERIVED_FROM", "Model", "chat-7b:1"),
        (5, "Deployment", "dep-chat-v2", "SERVES", "Model", "chat-7b:2"),
    )


def test_impact_of_an_evaluation_set(seeded: Lineage) -> None:
    assert seeded.audit("impact", {"id": "ds-eval", "label": "Dataset"}) == walk(
        (1, "DatasetVersion", "dv-eval-1", "VERSION_OF", "Dataset", "ds-eval"),
        (2, "Evaluation", "eval-chat-mmlu", "USED", "DatasetVersion", "dv-eval-1"),
    )


def test_unapproved_deployments(seeded: Lineage) -> None:
    assert seeded.audit("unapproved_deployments") == [
        {"deployment": "dep-chat-v2", "endpoint": "chat", "model": "chat-7b:2",
         "started_at": f"2024-03-01{T}", "ended_at": None},
    ]  # fmt: skip


def test_deployed_models_without_a_finished_evaluation(seeded: Lineage) -> None:
    assert seeded.audit("unevaluated_models", {"benchmark": "mmlu"}) == [
        {
            "model": "chat-7b:2",
            "name": "chat-7b",
            "version": "2",
            "deployment": "dep-chat-v2",
            "endpoint": "chat",
        },
        {
            "model": "code-7b:1",
            "name": "code-7b",
            "version": "1",
            "deployment": "dep-code",
            "endpoint": "code",
        },
    ]
    assert [row["model"] for row in seeded.audit("unevaluated_models", {"benchmark": "humaneval"})] == [
        "chat-7b:1",
        "chat-7b:2",
    ]


def test_approvals_given_before_the_evaluation_finished(seeded: Lineage) -> None:
    assert seeded.audit("approved_before_evaluation") == [
        {"approval": "appr-code", "approved_at": f"2024-02-13{T}", "given_by": "bob", "model": "code-7b:1",
         "evaluation": "eval-code-humaneval", "benchmark": "humaneval", "finished_at": f"2024-02-14{T}"},
        {"approval": "appr-code", "approved_at": f"2024-02-13{T}", "given_by": "bob", "model": "code-7b:1",
         "evaluation": "eval-code-mmlu", "benchmark": "mmlu", "finished_at": None},
    ]  # fmt: skip


def test_models_trained_on_personal_or_restricted_data(seeded: Lineage) -> None:
    assert seeded.audit("restricted_data_models") == [
        {"model": "chat-7b:1", "trained_model": "chat-7b:1", "run": "run-ft", "dataset_version": "dv-chat-3",
         "dataset": "ds-chat", "personal_data": True, "licence": None},
        {"model": "chat-7b:2", "trained_model": "chat-7b:1", "run": "run-ft", "dataset_version": "dv-chat-3",
         "dataset": "ds-chat", "personal_data": True, "licence": None},
        {"model": "code-7b:1", "trained_model": "code-7b:1", "run": "run-code",
         "dataset_version": "dv-code-2",
         "dataset": "ds-code", "personal_data": False, "licence": "proprietary-noai"},
    ]  # fmt: skip


def test_restricted_data_reaches_models_through_resumed_runs(seeded: Lineage) -> None:
    # run-ft saved a checkpoint; run-resume1 resumed from it on clean data, run-resume2 from that one:
    # the model at the end of the chain was still trained on dv-chat-3's personal data.
    seeded.record("Run", "run-ft", links=[Link("PRODUCED", "Checkpoint", "ckpt-ft-500")])
    seeded.record(
        "Run",
        "run-resume1",
        links=[Link("USED", "Checkpoint", "ckpt-ft-500"), Link("PRODUCED", "Checkpoint", "ckpt-r1-900")],
    )
    seeded.record(
        "Run",
        "run-resume2",
        links=[Link("USED", "Checkpoint", "ckpt-r1-900"), Link("PRODUCED", "Model", "chat-7b:3")],
    )
    rows = [r for r in seeded.audit("restricted_data_models") if r["model"] == "chat-7b:3"]
    assert rows == [
        {"model": "chat-7b:3", "trained_model": "chat-7b:3", "run": "run-resume2",
         "dataset_version": "dv-chat-3", "dataset": "ds-chat", "personal_data": True, "licence": None},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2024-02-20T12:00:00+02:00", ["dep-chat-v1"]),
        ("2024-03-01T00:00:00Z", ["dep-chat-v2"]),
        ("2024-02-29T23:59:59Z", ["dep-chat-v1"]),
        ("2024-01-01T00:00:00Z", []),
    ],
)
def test_which_model_served_an_endpoint_at_a_time(seeded: Lineage, at: str, expected: list[str]) -> None:
    assert [
        row["deployment"] for row in seeded.audit("served_at", {"endpoint": "chat", "at": at})
    ] == expected


def test_served_at_row(seeded: Lineage) -> None:
    assert seeded.audit("served_at", {"endpoint": "chat", "at": "2024-02-20T00:00:00Z"}) == [
        {"deployment": "dep-chat-v1", "model": "chat-7b:1", "name": "chat-7b", "version": "1",
         "started_at": f"2024-02-07{T}", "ended_at": f"2024-03-01{T}"},
    ]  # fmt: skip


def test_runs_and_models_on_a_gpu_during_a_hardware_incident(seeded: Lineage) -> None:
    assert seeded.audit("incident_exposure") == [
        {"incident": "inc-1", "layer": "gpu_memory", "gpu": "gpu-a", "run": "run-ft",
         "run_started_at": f"2024-02-01{T}", "run_ended_at": f"2024-02-03{T}", "produced": "chat-7b:1"},
        {"incident": "inc-3", "layer": "gpu_hardware", "gpu": "gpu-b", "run": "run-code",
         "run_started_at": f"2024-02-10{T}", "run_ended_at": f"2024-02-12{T}", "produced": "code-7b:1"},
        {"incident": "inc-3", "layer": "gpu_hardware", "gpu": "gpu-b", "run": "run-pre2",
         "run_started_at": "2024-01-05T01:00:00.000000Z", "run_ended_at": f"2024-01-10{T}",
         "produced": "base-7b:1"},
    ]  # fmt: skip
    assert [r["run"] for r in seeded.audit("incident_exposure", {"incident": "inc-1"})] == ["run-ft"]
    assert seeded.audit("incident_exposure", {"incident": "inc-2"}) == []


def test_incidents_link_to_the_runs_they_touched(seeded: Lineage) -> None:
    rows = seeded.query("MATCH (i:Incident)-[:AFFECTED]->(r:Run) RETURN i.id AS i, r.id AS r ORDER BY i, r")
    assert rows == [
        {"i": "inc-1", "r": "run-ft"},
        {"i": "inc-2", "r": "run-pre"},
        {"i": "inc-3", "r": "run-code"},
        {"i": "inc-3", "r": "run-pre2"},
    ]


def test_bad_parameters_are_refused_with_the_reason(seeded: Lineage) -> None:
    with pytest.raises(LineageError, match="needs --param benchmark"):
        seeded.audit("unevaluated_models")
    with pytest.raises(LineageError, match="has no parameter colour"):
        seeded.audit("unapproved_deployments", {"colour": "red"})
    with pytest.raises(LineageError, match="not an ISO-8601 time"):
        seeded.audit("served_at", {"endpoint": "chat", "at": "yesterday"})
    with pytest.raises(LineageError, match="unknown audit query"):
        seeded.audit("everything")


def test_every_query_is_documented() -> None:
    for query in QUERIES.values():
        assert query.description and query.columns
        assert all(param.help for param in query.params)


def test_restricted_data_reaches_models_through_derived_datasets(lineage: Lineage) -> None:
    # The probe's shape: personal data -> prep run -> clean dataset -> train run -> model, and a
    # second hand-off after it; every OpenLineage pipeline hands data on this way.
    lineage.record("Dataset", "users", {"contains_personal_data": True})
    lineage.record("DatasetVersion", "users@1", {}, [Link("VERSION_OF", "Dataset", "users")])
    lineage.record(
        "Run",
        "prep",
        {},
        [Link("USED", "DatasetVersion", "users@1"), Link("PRODUCED", "DatasetVersion", "f@1")],
    )
    lineage.record(
        "Run", "prep2", {}, [Link("USED", "DatasetVersion", "f@1"), Link("PRODUCED", "DatasetVersion", "g@1")]
    )
    lineage.record(
        "Run", "train", {}, [Link("USED", "DatasetVersion", "g@1"), Link("PRODUCED", "Model", "r:1")]
    )
    lineage.record("Model", "r:2", {}, [Link("DERIVED_FROM", "Model", "r:1")])
    assert lineage.audit("restricted_data_models") == [
        {"model": "r:1", "trained_model": "r:1", "run": "train", "dataset_version": "users@1",
         "dataset": "users", "personal_data": True, "licence": None},
        {"model": "r:2", "trained_model": "r:1", "run": "train", "dataset_version": "users@1",
         "dataset": "users", "personal_data": True, "licence": None},
    ]  # fmt: skip
