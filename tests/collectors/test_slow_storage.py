"""Slow storage on one node: its CPUs' I/O wait apart from its job's peers for several windows, its ranks
held up outside compute; a fault on every GPU of a node names the node; symptoms stay within a job.

The windows come from ``fleetscope simulate``'s cluster read the way the live collector reads exporters
(each node's exposition now, counters as increases since the same scrape one window earlier), from the
exporter's own host collector over a recorded ``/proc/stat`` advanced per window, or, for node_exporter's
per-CPU counters, from written expositions."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from fleetscope.collectors.correlator import correlate
from fleetscope.collectors.evidence import Finding
from fleetscope.collectors.history import DEVIATION_WINDOWS, WindowHistory, robust_scores, share
from fleetscope.collectors.incidents import IncidentStore
from fleetscope.collectors.investigate import investigate, investigate_window
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.live import LiveCollector, NodeSnapshot, exposition, window_families
from fleetscope.collectors.topology import Topology
from fleetscope.exporters.host import HostCollector
from fleetscope.simulate import SimulatedCluster, parse_fault

FIXTURES = Path(__file__).parents[1] / "fixtures"

NODES = 4
WINDOW = 5.0
FAULT = "+15/20"  # on at simulated second 15, for 20 s


class _SimulatedWindows:
    """A live-collector source over a simulated cluster at simulated time ``t`` (set by the test)."""

    def __init__(self, cluster: SimulatedCluster) -> None:
        self.cluster = cluster
        self.t = 0.0
        self.skipped: list[str] = []
        self.down: list[str] = []

    def window(self, node: int) -> list[Metric]:
        _, start = window_families(exposition(self.cluster.families(node, self.t - WINDOW)), None)
        return window_families(exposition(self.cluster.families(node, self.t)), start)[0]

    def fetch(self) -> dict[str, NodeSnapshot]:
        return {name: NodeSnapshot(families=self.window(i)) for i, name in enumerate(self.cluster.names)}


def _cycles(tmp_path: Path, faults: list[str], times: range) -> Iterator[tuple[float, dict[str, Any]]]:
    """Run the live collector over the simulated cluster once per simulated second in ``times``; each
    window is also written to ``tmp_path / "window"``."""
    cluster = SimulatedCluster(NODES, [parse_fault(f, NODES) for f in faults], links=2, start=0.0)
    source = _SimulatedWindows(cluster)
    collector = LiveCollector(
        [source],
        IncidentStore(tmp_path / "incidents.db"),
        window_dir=tmp_path / "window",
        window=timedelta(seconds=WINDOW),
    )
    for t in times:
        source.t = float(t)
        yield source.t, collector.run_once()
    collector.store.close()


def test_a_node_whose_storage_holds_its_ranks_up_is_one_storage_incident_on_the_node(tmp_path: Path) -> None:
    reports = dict(_cycles(tmp_path, [f"slow_checkpoint@3{FAULT}"], range(8, 36)))
    assert not any(r["incident"] for t, r in reports.items() if t <= 15)
    storage = [
        t for t, r in reports.items() if r["incident"] and r["root_causes"][0]["kind"] == "slow_storage"
    ]
    # Two signals agree (the node's I/O wait apart, its ranks held up outside compute): the window in which
    # they do counts, before the I/O wait alone has persisted for persist_windows windows.
    assert storage and min(storage) < 15 + scoring("persistent_deviation.persist_windows")
    first = reports[min(storage)]["root_causes"][0]
    assert first["certainty"] == "likely" and "in this one window); its rank" in first["summary"]
    top = reports[storage[0] + 4]["root_causes"][0]
    assert (top["layer"], top["node"], top["gpu"], top["certainty"]) == (
        "storage",
        "sim-node-0003",
        None,
        "likely",
    )
    assert (
        "of their time waiting on I/O in the window while the other 3 nodes of job sim-4242" in top["summary"]
    )
    assert "s per step outside compute and collectives" in top["summary"]
    assert "windows in a row" in top["summary"]  # by then it has persisted too
    # Before the I/O wait stood apart, the node's eight held-up ranks were stragglers: one cause for the
    # node, no GPU, so the store keeps one incident at one place that sharpens to storage.
    early = reports[min(storage) - 1]["root_causes"][0]
    assert (early["kind"], early["node"], early["gpu"]) == ("straggler_rank", "sim-node-0003", None)
    assert early["summary"].startswith("The same fault on 8 GPUs of sim-node-0003")
    assert early["summary"].count("the straggler") == 3 and early["summary"].endswith(
        "; and 5 more like these"
    )
    # The last window written out as a bundle gives the same answer (its history series went with it).
    last = reports[max(reports)]["root_causes"]
    assert last[0]["kind"] == "slow_storage"
    offline = investigate(tmp_path / "window").to_dict()["root_causes"]
    assert [(c["kind"], c["node"], c["summary"]) for c in offline] == [
        (c["kind"], c["node"], c["summary"]) for c in last
    ]
    store = IncidentStore(tmp_path / "incidents.db")
    try:
        (incident,) = store.recent(state=None)
    finally:
        store.close()
    assert (incident.layer, incident.node, incident.gpu) == ("storage", "sim-node-0003", None)


def test_every_node_writing_a_checkpoint_at_once_opens_nothing(tmp_path: Path) -> None:
    faults = [f"slow_checkpoint@{n}{FAULT}" for n in range(1, NODES + 1)]
    reports = dict(_cycles(tmp_path, faults, range(14, 30)))
    assert not any(r["incident"] for r in reports.values()), [r["root_causes"] for r in reports.values()]


def test_a_straggler_on_one_gpu_is_no_storage_fault_and_keeps_its_gpu(tmp_path: Path) -> None:
    reports = dict(_cycles(tmp_path, [f"straggler@3:2{FAULT}"], range(18, 26)))
    tops = {(c["kind"], c["node"], c["gpu"]) for r in reports.values() for c in r["root_causes"][:1]}
    assert tops == {("straggler_rank", "sim-node-0003", 2)}


# ------------------------------------------------------------------ node_exporter's per-CPU counters


def _node_exporter(iowait: float, job: str | None = "j7") -> list[Metric]:
    """A window of node_exporter's ``node_cpu_seconds_total`` on 4 CPUs (each 5 s of CPU time, ``iowait``
    of it waiting on I/O), with the job that holds the node's GPUs where ``job`` is given."""
    lines = ["# TYPE node_cpu_seconds_total counter"]
    for cpu in range(4):
        modes = {"user": 3.0, "system": 0.5, "idle": 1.5 - iowait - 0.01 * cpu, "iowait": iowait + 0.01 * cpu}
        lines += [f'node_cpu_seconds_total{{cpu="{cpu}",mode="{m}"}} {v}' for m, v in modes.items()]
    if job:
        lines += [
            "# TYPE fleetscope_gpu_job_info gauge",
            f'fleetscope_gpu_job_info{{gpu="0",job_id="{job}"}} 1',
        ]
    return window_families("\n".join(lines) + "\n", {})[0]


def _observe(history: WindowHistory, window: dict[str, list[Metric]]) -> dict[str, Any]:
    for node, families in history.observe(window, down=()).items():
        window[node] = window[node] + families
    return investigate_window(window, {}).to_dict()


def test_node_exporters_cpu_counters_are_read_the_same_way() -> None:
    history = WindowHistory(timedelta(seconds=5))
    persist = int(scoring("persistent_deviation.persist_windows"))
    reports = [
        _observe(
            history,
            {f"node-0{n}": _node_exporter(1.0 if n == 2 else 0.02) for n in range(1, 6)},
        )
        for _ in range(persist)
    ]
    assert not any(r["incident"] for r in reports[:-1])
    top = reports[-1]["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu"]) == (
        "slow_storage",
        "storage",
        "node-02",
        None,
    )
    # No training series: the I/O wait alone names the node, unsure whether it holds a job up.
    assert top["certainty"] == "unsure"
    assert "node-02's CPUs spent 20.3% of their time waiting on I/O" in top["summary"]
    assert "no training series of its ranks" in top["summary"]
    # Quoted: the deviation's two series and the node's own I/O-wait samples, a few of its four CPUs'.
    texts = [e["text"] for e in top["evidence"]]
    assert texts[0].startswith("fleetscope_collector_peer_deviation_windows{")
    assert len(texts) == 6 and all('mode="iowait"' in t for t in texts[2:])


def test_the_exporters_own_cpu_counters_from_proc_stat(tmp_path: Path) -> None:
    """Five nodes' host collectors read their ``/proc/stat`` (the recorded fixture's, advanced by a window
    of ticks each look); node-03's CPUs spend a third of the window in iowait, the others 1%."""
    recorded = (FIXTURES / "procfs" / "stat").read_text().splitlines()
    base = [int(v) for v in recorded[0].split()[1:]]  # user nice system idle iowait irq softirq steal ...
    job = '# TYPE fleetscope_gpu_job_info gauge\nfleetscope_gpu_job_info{gpu="0",job_id="j7"} 1\n'

    def look(node: str, window: int) -> str:
        """The node's exposition after ``window`` windows of 500 ticks (5 s at 100 Hz on one CPU)."""
        waits = 166 if node == "node-03" else 5
        ticks = [*base]
        ticks[0] += 300 * window
        ticks[3] += (200 - waits) * window
        ticks[4] += waits * window
        proc = tmp_path / node
        if not proc.exists():
            shutil.copytree(FIXTURES / "procfs", proc)
        (proc / "stat").write_text("\n".join([f"cpu  {' '.join(map(str, ticks))}", *recorded[1:]]) + "\n")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(HostCollector(proc, FIXTURES / "sysfs", ticks_per_second=100))
        return "\n".join(ln for ln in generate_latest(registry).decode().splitlines() if "cpu_seconds" in ln)

    nodes = [f"node-0{n}" for n in range(1, 6)]
    history = WindowHistory(timedelta(seconds=5))
    reports = []
    for window in range(1, int(scoring("persistent_deviation.persist_windows")) + 1):
        families = {}
        for node in nodes:
            _, start = window_families(look(node, window - 1) + "\n", None)
            families[node] = window_families(look(node, window) + "\n" + job, start)[0]
        reports.append(_observe(history, families))
    assert not any(r["incident"] for r in reports[:-1])
    top = reports[-1]["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"]) == ("slow_storage", "node-03", None)
    assert (
        "node-03's CPUs spent 33.2% of their time waiting on I/O in the window while the other 4"
        in top["summary"]
    )


def test_a_wait_that_does_not_persist_or_has_no_job_is_nothing() -> None:
    persist = int(scoring("persistent_deviation.persist_windows"))
    history = WindowHistory(timedelta(seconds=5))
    for i in range(2 * persist):
        spike = i % persist == 0  # one window apart, then back with its peers: a checkpoint, not a fault
        report = _observe(
            history, {f"n{n}": _node_exporter(1.0 if n == 2 and spike else 0.02) for n in range(5)}
        )
        assert not report["incident"]
    # Nodes no job record names do different I/O by design: not compared (jobs_only).
    history = WindowHistory(timedelta(seconds=5))
    for _ in range(persist + 1):
        window = {f"n{n}": _node_exporter(1.0 if n == 2 else 0.02, job=None) for n in range(5)}
        derived = history.observe(window, down=())
        assert not any(
            s.name == DEVIATION_WINDOWS for families in derived.values() for f in families for s in f.samples
        )


def _held(node: int, extra: float) -> list[Metric]:
    """Rank ``node`` of job j7 on GPU 0 in a window: 50 steps of 1 s, 0.9 s of each computing or waiting in
    collectives, ``extra`` s more of each outside them (a checkpoint write between steps)."""
    lines = [
        "# TYPE fleetscope_training_rank_info gauge",
        f'fleetscope_training_rank_info{{job_id="j7",local_rank="0",rank="{node}",world_size="5"}} 1',
        "# TYPE fleetscope_training_steps_total counter",
        f'fleetscope_training_steps_total{{rank="{node}"}} 50',
        "# TYPE fleetscope_training_step_duration_seconds histogram",
        f'fleetscope_training_step_duration_seconds_sum{{rank="{node}"}} {50 * (1.0 + extra)}',
        f'fleetscope_training_step_duration_seconds_count{{rank="{node}"}} 50',
        "# TYPE fleetscope_training_phase_seconds_total counter",
        f'fleetscope_training_phase_seconds_total{{phase="forward",rank="{node}"}} 15',
        f'fleetscope_training_phase_seconds_total{{phase="backward",rank="{node}"}} 25',
        f'fleetscope_training_phase_seconds_total{{phase="optimizer",rank="{node}"}} 2.5',
        f'fleetscope_training_phase_seconds_total{{phase="collective_wait",rank="{node}"}} 2.5',
    ]
    return window_families("\n".join(lines) + "\n", {})[0]


def test_two_signals_that_agree_need_no_persistence_and_one_alone_still_waits() -> None:
    """node-02's CPUs wait on I/O apart from its peers' from the first window on. With its rank held up
    0.3 s a step outside compute and collectives, the two agree and the first window names the node's
    storage; with its rank at the job's pace, the I/O wait alone waits for persist_windows windows."""
    persist = int(scoring("persistent_deviation.persist_windows"))
    for extra, first in ((0.3, 1), (0.0, persist)):
        history = WindowHistory(timedelta(seconds=50))
        reports = [
            _observe(
                history,
                {
                    f"node-0{n}": _node_exporter(1.0 if n == 2 else 0.02) + _held(n, extra if n == 2 else 0.0)
                    for n in range(1, 6)
                },
            )
            for _ in range(persist)
        ]
        assert [r["incident"] for r in reports] == [i + 1 >= first for i in range(persist)], extra
        top = reports[first - 1]["root_causes"][0]
        assert (top["kind"], top["node"], top["layer"]) == ("slow_storage", "node-02", "storage")
        if extra:
            assert top["certainty"] == "likely"
            assert ", in this one window); its rank 2 spends 0.4 s per step outside compute" in top["summary"]
            assert "against 0.1 s for the job's median rank" in top["summary"]
        else:
            assert top["certainty"] == "unsure" and f"for {persist} windows in a row" in top["summary"]
    # Ranks held up on a node whose CPUs wait like their peers': no storage fault (a slow GPU, a straggler).
    window = {f"node-0{n}": _node_exporter(0.02) + _held(n, 0.3 if n == 2 else 0.0) for n in range(1, 6)}
    assert not any(c["kind"] == "slow_storage" for c in _observe(WindowHistory(), window)["root_causes"])


def test_the_share_and_its_floor() -> None:
    assert share([({"mode": "iowait"}, 1.0), ({"mode": "idle"}, 3.0)], "mode", "iowait") == 0.25
    assert share([], "mode", "iowait") is None  # a baseline window: nothing rose
    # Peers agreeing exactly on 0.3% would make 0.5% infinitely far; the floor keeps it at 0.2 spreads.
    assert robust_scores([0.003, 0.003, 0.003, 0.005], floor=0.01)[-1] == pytest.approx(0.2)


# ------------------------------------------------------------------ a fault on several GPUs; symptoms per job


def _cause(node: str, gpu: int | None = None, kind: str = "thermal_slowdown") -> Finding:
    return Finding(
        kind=kind,
        layer="thermal_power",
        role="cause",
        severity="error",
        weight=0.7,
        summary=f"GPU {gpu} on {node} is held down",
        node=node,
        gpu=gpu,
        explains="cluster",
    )


def _symptom(node: str) -> Finding:
    return Finding(
        kind="watchdog",
        layer="framework",
        role="symptom",
        severity="error",
        weight=0.25,
        summary="",
        node=node,
        explains="node",
    )


def test_a_fault_on_every_gpu_of_a_node_names_the_node_and_on_some_the_first_gpu() -> None:
    every = Topology.from_samples(
        ("n1", "fleetscope_gpu_job_info", {"gpu": str(gpu), "job_id": "j"}, 1.0) for gpu in (3, 6)
    )
    (merged,) = correlate([_cause("n1", 3), _cause("n1", 6)], every).causes
    assert (merged.finding.node, merged.finding.gpu, merged.finding.gpu_pci_bus_id) == ("n1", None, None)
    assert merged.finding.summary.startswith("The same fault on 2 GPUs of n1 (GPU 3; GPU 6)")
    # Two of the node's eight, or no topology at all: the first GPU stands for them.
    eight = Topology.from_samples(
        ("n1", "fleetscope_gpu_job_info", {"gpu": str(gpu), "job_id": "j"}, 1.0) for gpu in range(8)
    )
    for topology in (eight, None):
        (merged,) = correlate([_cause("n1", 3), _cause("n1", 6)], topology).causes
        assert merged.finding.gpu == 3
    (one,) = correlate([_cause("n1", 3)]).causes
    assert one.finding.gpu == 3


def _jobs(**nodes: str) -> Topology:
    return Topology.from_samples(
        (node, "fleetscope_gpu_job_info", {"gpu": "0", "job_id": job}, 1.0) for node, job in nodes.items()
    )


def test_a_cause_explains_symptoms_only_on_nodes_of_its_own_job() -> None:
    findings = [_cause("a1", 0), _symptom("a2"), _symptom("b1"), _symptom("x1")]
    topology = _jobs(a1="ja", a2="ja", b1="jb")  # x1: no job known there
    explained = {s.node: owner for s, owner in correlate(findings, topology).symptoms}
    assert explained == {"a2": 0, "b1": None, "x1": 0}
    # A bundle without job records: the whole cluster, as before.
    assert {s.node: owner for s, owner in correlate(findings).symptoms} == {"a2": 0, "b1": 0, "x1": 0}
    # A cause on a node whose job is unknown (a dead node's series are gone) keeps explaining any node.
    dead = [_cause("d1", 0), _symptom("b1")]
    assert correlate(dead, topology).symptoms[0][1] == 0


def test_a_window_keeps_another_jobs_gpu_error_out_of_a_stragglers_incident() -> None:
    """Job j7 on node-01 and node-02 has a straggler; node-03 runs job j8, whose GPU reports Xid 45 (a
    channel torn down: a symptom). The straggler of j7 does not explain it; the symptom stays unexplained."""
    wait = {r: 30.0 + r % 2 for r in range(8)}
    wait[6] = 2.0
    lines = {
        "node-01": _training("j7", {0: 0, 1: 1, 2: 2, 3: 3}, wait),
        "node-02": _training("j7", {4: 0, 5: 1, 6: 2, 7: 3}, wait),
        "node-03": '# TYPE fleetscope_gpu_job_info gauge\nfleetscope_gpu_job_info{gpu="0",job_id="j8"} 1\n',
    }
    samples = {node: window_families(text, {})[0] for node, text in lines.items()}
    xid45 = "[14370.688139] NVRM: Xid (PCI:0000:0a:00): 45, pid='<unknown>', name=<unknown>, Ch 00000008"
    report = investigate_window(samples, {"node-03": [xid45]}).to_dict()
    assert (report["root_causes"][0]["kind"], report["root_causes"][0]["node"]) == (
        "straggler_rank",
        "node-02",
    )
    (symptom,) = report["symptoms"]
    assert (symptom["node"], symptom["explained_by"]) == ("node-03", None)


def _training(job: str, ranks: dict[int, int], wait: dict[int, float], steps: int = 100) -> str:
    """A node's training series in a window: ranks (global -> local) of ``job``, each ``steps`` steps of
    1 s with ``wait[rank]`` seconds of collective wait in all."""
    return "".join(
        [
            "# TYPE fleetscope_training_rank_info gauge\n",
            *(
                f'fleetscope_training_rank_info{{job_id="{job}",local_rank="{lr}",rank="{r}",'
                'world_size="8"} 1\n'
                for r, lr in ranks.items()
            ),
            "# TYPE fleetscope_training_steps_total counter\n",
            *(f'fleetscope_training_steps_total{{rank="{r}"}} {steps}\n' for r in ranks),
            "# TYPE fleetscope_training_phase_seconds_total counter\n",
            *(
                f'fleetscope_training_phase_seconds_total{{phase="collective_wait",rank="{r}"}} {wait[r]}\n'
                for r in ranks
            ),
            "# TYPE fleetscope_training_step_duration_seconds histogram\n",
            *(f'fleetscope_training_step_duration_seconds_sum{{rank="{r}"}} {steps}\n' for r in ranks),
            *(f'fleetscope_training_step_duration_seconds_count{{rank="{r}"}} {steps}\n' for r in ranks),
        ]
    )
