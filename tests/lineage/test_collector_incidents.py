"""Collector incidents in the lineage graph: linked to the runs on their GPU (or host) at the time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fleetscope.collectors.incidents import Incident, IncidentStore
from fleetscope.lineage import Lineage, Link, open_store, record_collector_incident
from tests.exporters.support import KERNEL_LOGS, running_exporter, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _incident(node: str, gpu: int | None, bus: str | None, when: str) -> Incident:
    report = {
        "incident": True,
        "root_causes": [
            {
                "layer": "gpu_hardware",
                "node": node,
                "gpu": gpu,
                "gpu_pci_bus_id": bus,
                "confidence": 0.9,
                "kind": "xid:79",
                "summary": f"the GPU at {bus} on {node} fell off the bus",
                "action": "drain the node",
                "evidence": [],
            }
        ],
        "timeline": [{"time": when, "node": node, "text": "NVRM: Xid 79"}, {"time": None, "text": "x"}],
        "symptoms": [],
        "unparsed": {"files": 0, "lines": 0},
    }
    recorded = IncidentStore(":memory:").record(report)
    assert recorded is not None
    return recorded.incident


def _seed(lineage: Lineage) -> None:
    lineage.record("GPU", "GPU-5", {"host": "node-07", "index": 5, "pci_bus_id": "0000:b3:00.0"})
    lineage.record("GPU", "GPU-6", {"host": "node-07", "index": 6, "pci_bus_id": "0000:b4:00.0"})
    lineage.record(
        "Run",
        "run-on-5",
        {"started_at": "2026-01-01T00:00:00Z"},
        [Link("RAN_ON", "GPU", "GPU-5"), Link("RAN_ON", "Host", "node-07"), Link("PRODUCED", "Model", "m:1")],
    )
    lineage.record(
        "Run", "run-on-6", {"started_at": "2026-01-01T00:00:00Z"}, [Link("RAN_ON", "GPU", "GPU-6")]
    )
    lineage.record(
        "Run",
        "run-before",
        {"started_at": "2025-12-01T00:00:00Z", "ended_at": "2025-12-02T00:00:00Z"},
        [Link("RAN_ON", "GPU", "GPU-5")],
    )


def test_a_gpu_incident_exposes_the_runs_on_that_gpu_then(lineage: Lineage) -> None:
    _seed(lineage)
    incident = _incident("node-07", None, "0000:b3:00.0", "2026-01-02T03:04:05+00:00")
    node_id = record_collector_incident(lineage, incident)
    record_collector_incident(lineage, incident)  # the next cycle reports the same fault: one node

    rows = lineage.audit("incident_exposure", {"incident": node_id})
    assert [(r["gpu"], r["run"], r["produced"]) for r in rows] == [("GPU-5", "run-on-5", "m:1")]
    (node,) = lineage.query("MATCH (i:Incident) RETURN i.started_at AS started, i.kind AS kind")
    assert node == {"started": "2026-01-02T03:04:05.000000Z", "kind": "xid:79"}


def test_an_incident_on_a_gpu_the_graph_does_not_know_falls_back_to_its_host(lineage: Lineage) -> None:
    _seed(lineage)
    record_collector_incident(lineage, _incident("node-07", 3, None, "2026-01-02T00:00:00+00:00"))
    rows = lineage.query(
        "MATCH (i:Incident)-[:ON]->(h:Host) OPTIONAL MATCH (i)-[:AFFECTED]->(r:Run) "
        "RETURN h.id AS host, r.id AS run"
    )
    assert rows == [{"host": "node-07", "run": "run-on-5"}]


def test_collect_records_its_incident_in_the_lineage_graph(tmp_path: Path) -> None:
    kernel_log = tmp_path / "kern.log"
    kernel_log.write_text("")
    with running_exporter(kernel_log) as exporter:
        fallen = (KERNEL_LOGS / "fallen-off-bus-multiline.dmesg.log").read_text()
        kernel_log.write_text(fallen)
        wait_for(
            lambda: (
                exporter.watcher is not None and exporter.watcher.snapshot()[2] == len(fallen.splitlines())
            )
        )
        graph_dir = tmp_path / "graph"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "fleetscope.console.cli",
                "collect",
                "--once",
                "-t",
                f"127.0.0.1:{exporter.port}",
                "--store",
                str(tmp_path / "incidents.db"),
                "--lineage-store",
                f"embedded://{graph_dir}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["incident"] is True
    store = open_store(f"embedded://{graph_dir}")
    try:
        rows = store.read("MATCH (i:Incident)-[:ON]->(h:Host) RETURN i.layer AS layer, h.id AS host")
    finally:
        store.close()
    assert rows == [{"layer": "gpu_hardware", "host": "127.0.0.1"}]
    (entry,) = [json.loads(line) for line in (graph_dir / "audit.jsonl").read_text().splitlines()]
    assert (entry["op"], entry["data"]["hosts"]) == ("incident", ["127.0.0.1"])
