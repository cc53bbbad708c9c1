"""End to end with real processes: ``fleetscope simulate`` -> ``fleetscope collect`` -> the incident store.

Each injected fault must become exactly one incident with the right layer, node and GPU while it lasts,
and that incident must resolve once the fault has stopped (short windows and resolve time by flags). The
same through a real Prometheus (Debian package) read over PromQL, and a counter that rose before the
collector started must never open an incident.

The kinds run three at a time, each in its own simulated cluster and collector, so the suite waits for
the slowest of each group rather than the sum.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetscope.collectors.incidents import Incident, IncidentStore
from tests.servers import free_port, prometheus_server

NODES = 4
FAULT_AT = 15.0  # seconds after the simulation starts: time for the collector's baseline cycles
FAULT_FOR = 20.0
WINDOW = 8.0  # long enough that nodes scraped a second or two apart on a busy machine see one pace
RESOLVE_AFTER = 4.0
#: Clusters run at once. Each is a simulator and a collector cycling every second; all nine at once kept
#: two cores so busy that cycles fell behind their interval and now and then a second incident opened.
AT_ONCE = 3
#: Per kind: the fault (node 3 of 4, GPU / rank / device 2), the layer its incident must name (None where
#: more than one is right: a slow rank or a node that stops answering says what, not why) and the GPU.
KINDS: dict[str, tuple[str, str | None, int | None]] = {
    "xid79": ("xid79@3:2", "gpu_hardware", 2),
    "ecc_storm": ("ecc_storm@3:2", "gpu_memory", 2),
    "thermal": ("thermal@3:2", "thermal_power", 2),
    "nvlink_crc": ("nvlink_crc@3:2.1", "nvlink", 2),
    "efa_retransmit": ("efa_retransmit@3:2", "network", None),
    "straggler": ("straggler@3:2", None, 2),
    "dataloader_stall": ("dataloader_stall@3:2", "data_pipeline", 2),
    "slow_checkpoint": ("slow_checkpoint@3", "storage", None),
    "dead_node": ("dead_node@3", None, None),
}


def _python(*args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fleetscope.console.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Run:
    """One simulated cluster with its collector, watched from the test."""

    folder: Path
    faults: Sequence[str]
    started: float = 0.0
    opened: dict[str, float] = field(default_factory=dict)  # incident id -> when the test first saw it
    last: list[Incident] = field(default_factory=list)

    @property
    def store(self) -> Path:
        return self.folder / "incidents.db"

    def simulate(self, cleanup: ExitStack) -> Path:
        """Start ``fleetscope simulate``; returns its file_sd file once written."""
        self.folder.mkdir(parents=True, exist_ok=True)
        targets = self.folder / "targets.json"
        args = ["simulate", "--nodes", str(NODES), "--links", "2", "--file-sd", str(targets)]
        for fault in self.faults:
            args += ["--fault", fault]
        self.started = time.time()
        cleanup.callback(_stop, _python(*args, log=self.folder / "simulate.log"))
        deadline = time.monotonic() + 60
        while not targets.exists():
            assert time.monotonic() < deadline, (self.folder / "simulate.log").read_text()
            time.sleep(0.2)
        return targets

    def collect(self, cleanup: ExitStack, *source: str) -> None:
        """Start ``fleetscope collect`` reading ``source`` into this run's store."""
        args = [
            "collect",
            *source,
            "--interval",
            "1",
            "--window",
            str(WINDOW),
            "--resolve-after",
            str(RESOLVE_AFTER),
            "--store",
            str(self.store),
            "--web.listen-address",
            f"127.0.0.1:{free_port()}",
        ]
        cleanup.callback(_stop, _python(*args, log=self.folder / "collect.log"))

    def incidents(self) -> list[Incident]:
        """The store's incidents now (the last read, while the collector holds the file locked).

        Read only once the collector has run a cycle: two processes creating one store at once race in
        its schema upgrade (both add the same column), so the test leaves the creating to the collector.
        """
        log = self.folder / "collect.log"
        if not log.exists() or "cycle: " not in log.read_text():
            return self.last
        try:
            store = IncidentStore(self.store)
            try:
                found = store.recent(state=None)
            finally:
                store.close()
        except sqlite3.OperationalError:  # "database is locked": the collector is writing; read next time
            return self.last
        self.last = found
        for incident in found:
            self.opened.setdefault(incident.fingerprint, time.time())
        return found


def _watch(runs: Sequence[Run], until: float, patience: float = 60.0) -> None:
    """Poll every run's store until ``until`` (Unix time), and on while an incident is still open, for
    at most ``patience`` seconds more (a loaded machine stretches the collector's cycles)."""
    while time.time() < until + patience:
        found = [run.incidents() for run in runs]
        if time.time() >= until and all(i.state == "resolved" for incidents in found for i in incidents):
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Every kind injected in its own cluster, :data:`AT_ONCE` clusters at a time; each watched until
    its fault has stopped and its incident had time to resolve."""
    root = tmp_path_factory.mktemp("kinds")
    runs = {
        kind: Run(root / kind, [f"{fault}+{FAULT_AT:g}/{FAULT_FOR:g}"])
        for kind, (fault, _, _) in KINDS.items()
    }
    group = list(runs.values())
    for start in range(0, len(group), AT_ONCE):
        with ExitStack() as cleanup:
            for run in group[start : start + AT_ONCE]:
                run.collect(cleanup, "--targets-file", str(run.simulate(cleanup)))
            last = max(run.started for run in group[start : start + AT_ONCE])
            # Resolution needs the window to pass the fault's end, then the quiet time, then a cycle or two.
            _watch(group[start : start + AT_ONCE], last + FAULT_AT + FAULT_FOR + WINDOW + RESOLVE_AFTER + 5)
    yield runs


def _check_lifecycle(run: Run, layer: str | None, gpu: int | None, node: str = "sim-node-0003") -> None:
    log = (run.folder / "collect.log").read_text()
    incidents = run.incidents()
    assert len(incidents) == 1, [(i.node, i.gpu, i.layer, i.summary[:300]) for i in incidents] or log[-3000:]
    (incident,) = incidents
    assert incident.node == node, incident.summary
    assert incident.gpu == gpu, incident.summary
    if layer is not None:
        assert incident.layer == layer, incident.summary
    onset, end = run.started + FAULT_AT, run.started + FAULT_AT + FAULT_FOR
    assert onset <= incident.first_seen.timestamp() <= end
    assert run.opened[incident.fingerprint] <= end + 2  # seen open while the fault lasted
    assert incident.state == "resolved", log[-3000:]
    assert incident.resolved_by == "quiet" and incident.resolved_at is not None
    # Seen until the fault's last window (a gauge-borne fault may leave the window a cycle before its
    # end on a loaded machine), and resolved only after the quiet time that followed.
    assert incident.last_seen.timestamp() >= end - WINDOW
    assert incident.resolved_at.timestamp() >= incident.last_seen.timestamp() + RESOLVE_AFTER


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_fault_becomes_one_incident_that_resolves_after_it_stops(kinds: dict[str, Run], kind: str) -> None:
    _, layer, gpu = KINDS[kind]
    _check_lifecycle(kinds[kind], layer, gpu)


@pytest.mark.integration
def test_the_same_through_a_real_prometheus(tmp_path: Path) -> None:
    run = Run(tmp_path / "run", [f"xid79@3:2+{FAULT_AT:g}/{FAULT_FOR:g}"])
    with ExitStack() as cleanup:
        groups = json.loads(run.simulate(cleanup).read_text())
        addresses = [group["targets"][0] for group in groups]
        prometheus = cleanup.enter_context(prometheus_server(tmp_path, addresses))
        run.collect(cleanup, "--prometheus-url", prometheus)
        _watch([run], run.started + FAULT_AT + FAULT_FOR + WINDOW + RESOLVE_AFTER + 5)
    # Static targets on one host: Prometheus's instance, and so the node, is the address.
    _check_lifecycle(run, "gpu_hardware", 2, node=addresses[2])


def test_a_counter_that_rose_before_the_collector_started_opens_nothing(tmp_path: Path) -> None:
    # Faults over before the collector's first look: the Xid counter, ECC, NVLink and EFA counters keep
    # their counts and /events keeps the Xid line (with its journald time), all older than any window.
    run = Run(
        tmp_path / "run",
        ["xid79@1:4+0/2", "ecc_storm@2:1+0/2", "nvlink_crc@3:0.1+0/2", "efa_retransmit@4:0+0/2"],
    )
    with ExitStack() as cleanup:
        targets = run.simulate(cleanup)
        time.sleep(max(0.0, run.started + 2 + WINDOW + 1 - time.time()))
        run.collect(cleanup, "--targets-file", str(targets))
        deadline = time.monotonic() + 90
        log = ""
        while log.count(f"cycle: nodes read {NODES},") < 6 and time.monotonic() < deadline:
            run.incidents()
            time.sleep(0.5)
            log = (run.folder / "collect.log").read_text()
    assert log.count(f"cycle: nodes read {NODES},") >= 6, log[-3000:]
    assert run.incidents() == [], log[-3000:]
