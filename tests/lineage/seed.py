"""A small, realistic lineage graph: pre-training with a checkpoint hand-off, two fine-tunes,
evaluations, approvals, deployments over time and two GPU incidents. The audit-query tests state
their expected rows against this graph by hand."""

from __future__ import annotations

from fleetscope.lineage import Lineage, Link


def seed(lin: Lineage) -> None:
    r = lin.record
    r("Person", "alice", {"name": "Alice"})
    r("Person", "bob", {"name": "Bob"})
    r("Dataset", "ds-web", {"name": "web", "licence": "cc-by-4.0", "licence_restricted": False})
    r("Dataset", "ds-chat", {"name": "chat logs", "contains_personal_data": True})
    r("Dataset", "ds-code", {"name": "code", "licence": "proprietary-noai", "licence_restricted": True})
    r("Dataset", "ds-eval", {"name": "mmlu"})
    for dv, ds in (
        ("dv-web-1", "ds-web"),
        ("dv-chat-3", "ds-chat"),
        ("dv-code-2", "ds-code"),
        ("dv-eval-1", "ds-eval"),
    ):
        r("DatasetVersion", dv, {"version": dv.rsplit("-", 1)[1]}, [Link("VERSION_OF", "Dataset", ds)])
    r("Config", "cfg-pre", {"name": "pretrain.yaml"})
    r("Config", "cfg-ft", {"name": "sft.yaml"})
    r("Code", "code-abc", {"repo": "git@example:train.git", "commit": "abc"})
    r("GPU", "gpu-a", {"index": 0, "host": "h1"})
    r("GPU", "gpu-b", {"index": 1, "host": "h1"})
    r(
        "Run",
        "run-pre",
        {"job_id": "job-pre", "started_at": "2024-01-01T00:00:00Z", "ended_at": "2024-01-05T00:00:00Z"},
        [
            Link("USED", "DatasetVersion", "dv-web-1"),
            Link("USED", "Config", "cfg-pre"),
            Link("USED", "Code", "code-abc"),
            Link("PRODUCED", "Checkpoint", "ckpt-pre-1000"),
            Link("RAN_ON", "Host", "h1"),
            Link("RAN_ON", "GPU", "gpu-a"),
        ],
    )
    r(
        "Run",
        "run-pre2",
        {"job_id": "job-pre2", "started_at": "2024-01-05T01:00:00Z", "ended_at": "2024-01-10T00:00:00Z"},
        [
            Link("USED", "Checkpoint", "ckpt-pre-1000"),
            Link("USED", "DatasetVersion", "dv-web-1"),
            Link("PRODUCED", "Model", "base-7b:1"),
            Link("RAN_ON", "GPU", "gpu-b"),
        ],
    )
    r("Model", "base-7b:1", {"name": "base-7b", "version": "1"})
    r(
        "Run",
        "run-ft",
        {"job_id": "job-ft", "started_at": "2024-02-01T00:00:00Z", "ended_at": "2024-02-03T00:00:00Z"},
        [
            Link("USED", "DatasetVersion", "dv-chat-3"),
            Link("USED", "Config", "cfg-ft"),
            Link("PRODUCED", "Model", "chat-7b:1"),
            Link("RAN_ON", "GPU", "gpu-a"),
        ],
    )
    r("Model", "chat-7b:1", {"name": "chat-7b", "version": "1"}, [Link("DERIVED_FROM", "Model", "base-7b:1")])
    r("Model", "chat-7b:2", {"name": "chat-7b", "version": "2"}, [Link("DERIVED_FROM", "Model", "chat-7b:1")])
    r(
        "Run",
        "run-code",
        {"job_id": "job-code", "started_at": "2024-02-10T00:00:00Z", "ended_at": "2024-02-12T00:00:00Z"},
        [
            Link("USED", "DatasetVersion", "dv-code-2"),
            Link("PRODUCED", "Model", "code-7b:1"),
            Link("RAN_ON", "GPU", "gpu-b"),
        ],
    )
    r("Model", "code-7b:1", {"name": "code-7b", "version": "1"}, [Link("DERIVED_FROM", "Model", "base-7b:1")])
    r(
        "Evaluation",
        "eval-chat-mmlu",
        {
            "benchmark": "mmlu",
            "score": 0.61,
            "started_at": "2024-02-04T00:00:00Z",
            "finished_at": "2024-02-05T00:00:00Z",
        },
        [Link("EVALUATED", "Model", "chat-7b:1"), Link("USED", "DatasetVersion", "dv-eval-1")],
    )
    r(
        "Evaluation",
        "eval-code-humaneval",
        {"benchmark": "humaneval", "score": 0.4, "finished_at": "2024-02-14T00:00:00Z"},
        [Link("EVALUATED", "Model", "code-7b:1")],
    )
    r(
        "Evaluation",
        "eval-code-mmlu",
        {"benchmark": "mmlu", "started_at": "2024-02-13T00:00:00Z"},
        [Link("EVALUATED", "Model", "code-7b:1")],
    )
    r(
        "Approval",
        "appr-chat",
        {"decision": "approved", "approved_at": "2024-02-06T00:00:00Z"},
        [Link("APPROVED", "Model", "chat-7b:1"), Link("GAVE", "Person", "alice")],
    )
    r(
        "Approval",
        "appr-code",
        {"decision": "approved", "approved_at": "2024-02-13T00:00:00Z"},
        [Link("APPROVED", "Deployment", "dep-code"), Link("GAVE", "Person", "bob")],
    )
    r(
        "Approval",
        "appr-base-rejected",
        {"decision": "rejected", "approved_at": "2024-01-11T00:00:00Z"},
        [Link("APPROVED", "Model", "base-7b:1"), Link("GAVE", "Person", "bob")],
    )
    r(
        "Deployment",
        "dep-chat-v1",
        {"endpoint": "chat", "started_at": "2024-02-07T00:00:00Z", "ended_at": "2024-03-01T00:00:00Z"},
        [Link("SERVES", "Model", "chat-7b:1")],
    )
    r(
        "Deployment",
        "dep-chat-v2",
        {"endpoint": "chat", "started_at": "2024-03-01T00:00:00Z"},
        [Link("SERVES", "Model", "chat-7b:2")],
    )
    r(
        "Deployment",
        "dep-code",
        {"endpoint": "code", "started_at": "2024-02-15T00:00:00Z"},
        [Link("SERVES", "Model", "code-7b:1")],
    )
    lin.record_incident(
        "inc-1",
        {
            "layer": "gpu_memory",
            "kind": "xid48_dbe",
            "started_at": "2024-02-02T00:00:00Z",
            "ended_at": "2024-02-02T06:00:00Z",
        },
        gpus=["gpu-a"],
    )
    lin.record_incident(
        "inc-2", {"layer": "network", "started_at": "2024-01-02T00:00:00Z"}, hosts=["h1"], job_ids=["job-pre"]
    )
    lin.record_incident(
        "inc-3",
        {"layer": "gpu_hardware", "kind": "xid79", "started_at": "2024-01-07T00:00:00Z"},
        gpus=["gpu-b"],
    )
