"""A seeded state for the console's tests: an incident store filled by the real engine, real exporters on
127.0.0.1 (the fake NVML, one GPU lost, training ranks fed through the real hook), one dead target, and
an embedded lineage graph where the incident touched a run.

The incidents are the engine's own reports on two example bundles (``fleetscope/examples/incidents/``),
so what the pages must show (the culprit, the evidence) is what ``fleetscope investigate`` says.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pynvml
import pytest

from fleetscope.collectors import investigate
from fleetscope.collectors.incidents import IncidentStore
from fleetscope.exporters.training import PHASES, TrainingHook
from fleetscope.lineage import AuditLog, Lineage, Link, open_store, record_collector_incident
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_X8, H200, running_exporter, wait_for
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "fleetscope" / "examples" / "incidents"
#: The open incident: Xid 119 on node-02's GPU 3 hangs a three-node collective.
OPEN_BUNDLE = EXAMPLES / "50-multinode-xid119-gsp-timeout-collective-hang"
#: The resolved one.
RESOLVED_BUNDLE = EXAMPLES / "01-xid79-fallen-off-bus-multiline"
#: Step seconds each rank of the seeded job reports; rank 5 is the straggler.
STEP_SECONDS = {4: 1.0, 5: 2.5, 6: 1.1, 7: 0.9}
JOB = "slurm-4242"


@dataclass
class Seeded:
    """What the console's tests read.

    Attributes:
        env: the environment the console runs with.
        open_report: the engine's report of the open incident.
        open_id: its fingerprint.
        resolved_id: the resolved incident's fingerprint.
        dead: the node whose exporter does not answer.
        hooks: the training hooks of the job's ranks.
        node01: the fake NVML behind node-01's exporter.
    """

    env: dict[str, str]
    open_report: dict[str, Any]
    open_id: str
    resolved_id: str
    dead: str
    hooks: list[TrainingHook]
    node01: FakeNvml


def seed_store(path: Path) -> tuple[dict[str, Any], str, str]:
    """Record the two example incidents (the resolved one first seen earlier); returns the open report
    and both fingerprints."""
    store = IncidentStore(path)
    try:
        old = investigate(RESOLVED_BUNDLE).to_dict()
        earlier = datetime.now(UTC) - timedelta(hours=3)
        resolved = store.record(old, now=earlier)
        assert resolved is not None
        store.resolve(resolved.incident.fingerprint, by="alice", now=earlier + timedelta(minutes=5))
        report = investigate(OPEN_BUNDLE).to_dict()
        opened = store.record(report)
        assert opened is not None
        return report, opened.incident.fingerprint, resolved.incident.fingerprint
    finally:
        store.close()


def seed_lineage(folder: Path, store_path: Path, open_id: str) -> str:
    """An embedded lineage graph where run-17 ran on node-02's GPU 3 and produced a checkpoint and a
    model, with the open incident recorded as the collector records it. Returns the store URI."""
    uri = f"embedded://{folder / 'graph'}"
    lineage = Lineage(
        open_store(uri), AuditLog(folder / "graph" / "audit.jsonl"), folder / "quarantine.jsonl"
    )
    try:
        lineage.record("GPU", "GPU-node02-3", {"host": "node-02", "index": 3, "pci_bus_id": "0000:5d:00.0"})
        lineage.record("DatasetVersion", "web@v3", {"contains_personal_data": True})
        started = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        lineage.record(
            "Run",
            "run-17",
            {"job_id": JOB, "started_at": started},
            links=[
                Link("RAN_ON", "GPU", "GPU-node02-3"),
                Link("USED", "DatasetVersion", "web@v3"),
                Link("PRODUCED", "Checkpoint", "ckpt-17-2000"),
                Link("PRODUCED", "Model", "chat:2"),
            ],
        )
        store = IncidentStore(store_path)
        try:
            incident = store.get(open_id)
        finally:
            store.close()
        assert incident is not None
        record_collector_incident(lineage, incident)
    finally:
        lineage.close()
    return uri


def train(hooks: list[TrainingHook], steps: int) -> None:
    """Each rank reports ``steps`` steps of :data:`STEP_SECONDS`, all but 0.6 s of each in collective wait."""
    for hook in hooks:
        seconds = STEP_SECONDS[hook.rank]
        for _ in range(steps):
            hook.record(seconds, phases=[0.0, 0.2, 0.3, 0.1, seconds - 0.6])
        hook.flush()


@pytest.fixture(scope="package")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """The seeded state, with two real exporters running for the whole package."""
    state = tmp_path_factory.mktemp("console-state")
    store = state / "incidents.db"
    report, open_id, resolved_id = seed_store(store)
    uri = seed_lineage(state / "lineage", store, open_id)
    # node-01's GPU has NVLinks (the H200 capture), so a test can make its error counters rise.
    healthy, faulty = FakeNvml.from_capture(H200), FakeNvml.from_capture(H100_X8)
    # The exporter asks once whether a link has a counter: this one has, at 0 until a test raises it.
    healthy.set_nvlink_errors(0, 0, pynvml.NVML_NVLINK_ERROR_DL_REPLAY, 0)
    faulty.lose_gpu(3)
    for log in ("a", "b"):
        (state / log).mkdir()
        (state / log / "kern.log").write_text("")
    sock = state / "a" / "training.sock"
    with (
        running_exporter(state / "a" / "kern.log", healthy, training_socket=str(sock)) as node01,
        running_exporter(state / "b" / "kern.log", faulty) as node02,
    ):
        wait_for(sock.is_socket)
        hooks = [
            TrainingHook(str(sock), rank=r, local_rank=r - 4, world_size=8, job_id=JOB) for r in STEP_SECONDS
        ]
        train(hooks, 5)
        dead = free_port()
        env = {
            "FLEETSCOPE_INCIDENT_STORE": str(store),
            "FLEETSCOPE_CONSOLE_TARGETS": (
                f"node-01=127.0.0.1:{node01.port},node-02=127.0.0.1:{node02.port},node-03=127.0.0.1:{dead}"
            ),
            "FLEETSCOPE_CONSOLE_REFRESH_SECONDS": "0",
            "FLEETSCOPE_LINEAGE_URI": uri,
            "HOME": str(state),
        }
        yield Seeded(env, report, open_id, resolved_id, "node-03", hooks, healthy)
        for hook in hooks:
            hook.close()
    assert PHASES[-1] == "collective_wait"  # the order the records above assume
