"""Detection that needs time, peers and topology: absence, persistent peer deviation (after Minder),
straggler ranks, stalled progress, fault rates over a window; against real exporters where a real one can
show the fault (a node that stops answering, a GPU that vanishes), else on written sample sets."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import Metric

from fleetscope.collectors.detectors.peer_deviation import _median_without
from fleetscope.collectors.history import (
    DEVIATION_WINDOWS,
    GPU_MISSING,
    STALLED,
    STALLED_SECONDS,
    TARGET_DOWN,
    WindowHistory,
)
from fleetscope.collectors.incidents import IncidentStore
from fleetscope.collectors.investigate import investigate, investigate_window
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.live import (
    ExporterSource,
    LiveCollector,
    PromQLSource,
    exposition,
    window_families,
)
from fleetscope.collectors.topology import Topology
from fleetscope.exporters.training import TrainingHook
from fleetscope.simulate import QueryAPI, SimulatedCluster, parse_fault
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_X8, running_exporter, samples, wait_for
from tests.servers import free_port


def _families(text: str) -> list[Metric]:
    """A window whose counters rose by the values written (none existed at the window's start)."""
    return window_families(text, {})[0]


def _report(window: dict[str, list[Metric]]) -> dict[str, Any]:
    """Investigate a window of families as the live collector hands it over."""
    return investigate_window(window, {}).to_dict()


def _names(families: list[Metric]) -> set[str]:
    return {s.name for f in families for s in f.samples}


# ------------------------------------------------------------------ absence, with real exporters


@pytest.fixture
def kernel_log(tmp_path: Path) -> Path:
    log = tmp_path / "kern.log"
    log.write_text("")
    return log


def test_an_exporter_that_stops_answering_is_a_dead_node_not_a_gap(tmp_path: Path, kernel_log: Path) -> None:
    with running_exporter(kernel_log) as alive, running_exporter(kernel_log) as dying:
        source = ExporterSource(
            [f"node-01=127.0.0.1:{alive.port}", f"node-02=127.0.0.1:{dying.port}"], timeout=2
        )
        collector = LiveCollector([source], IncidentStore(tmp_path / "i.db"))
        assert collector.run_once()["incident"] is False
        dying.stop()
        report = collector.run_once()
    top = report["root_causes"][0]
    assert (top["kind"], top["node"], top["layer"]) == ("absence:node", "node-02", "host_software")
    assert "has not answered for 1 window" in top["summary"]


def test_a_target_never_seen_answering_is_not_a_dead_node(tmp_path: Path, kernel_log: Path) -> None:
    with running_exporter(kernel_log) as alive:
        source = ExporterSource([f"127.0.0.1:{alive.port}", f"127.0.0.1:{free_port()}"], timeout=2)
        collector = LiveCollector([source], IncidentStore(tmp_path / "i.db"))
        collector.run_once()
        assert collector.run_once()["incident"] is False


def test_a_gpu_whose_series_vanish_from_a_live_exporter_is_a_lost_gpu(
    tmp_path: Path, kernel_log: Path
) -> None:
    """The node's exporter comes back (restarted after the driver reload) serving seven of its eight GPUs."""
    eight = FakeNvml.from_capture(H100_X8)
    seven = FakeNvml.from_capture(H100_X8)
    seven.gpus = seven.gpus[:7]
    store = IncidentStore(tmp_path / "i.db")
    with running_exporter(kernel_log, eight) as before:
        source = ExporterSource([f"node-01=127.0.0.1:{before.port}"])
        collector = LiveCollector([source], store, tmp_path / "w")
        assert collector.run_once()["incident"] is False
    with running_exporter(kernel_log, seven) as after:
        source.set_targets([f"node-01=127.0.0.1:{after.port}"])
        report = collector.run_once()
    top = report["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"], top["layer"]) == (
        "absence:gpu",
        "node-01",
        7,
        "gpu_hardware",
    )
    # The written window carries the collector's series, so the offline engine reaches the same answer.
    offline = investigate(tmp_path / "w").to_dict()["root_causes"][0]
    assert (offline["kind"], offline["gpu"]) == ("absence:gpu", 7)


def test_a_node_stays_missing_while_a_source_names_it_and_is_forgotten_once_none_does() -> None:
    history = WindowHistory()
    history.observe({"a": [], "b": []}, down=())
    windows = int(scoring("window_history.forget_after_windows")) + 2  # longer than a GPU is remembered
    counts = []
    for _ in range(windows):
        derived = history.observe({"a": []}, down={"b"})
        counts += [s.value for f in derived.get("b", []) for s in f.samples if s.name == TARGET_DOWN]
    assert counts == [float(n) for n in range(1, windows + 1)]  # still dead: never dropped while listed
    history.observe({"a": []}, down=())  # taken out of the targets: memory goes with it
    assert "b" not in history._answered and "b" not in history._down


def test_a_target_removed_from_the_list_is_not_a_dead_node() -> None:
    history = WindowHistory()
    history.observe({"a": [], "b": []}, down=())
    assert TARGET_DOWN not in _names(history.observe({"a": []}, down=()).get("b", []))


# ------------------------------------------------------------------ persistent peer deviation


def _gpus(node: str, clock: dict[int, float], job: str = "") -> list[Metric]:
    lines = ["# TYPE fleetscope_gpu_sm_clock_hertz gauge"]
    lines += [f'fleetscope_gpu_sm_clock_hertz{{gpu="{g}"}} {hz}' for g, hz in clock.items()]
    if job:
        lines += ["# TYPE fleetscope_gpu_job_info gauge"]
        lines += [f'fleetscope_gpu_job_info{{gpu="{g}",job_id="{job}"}} 1' for g in clock]
    return _families("\n".join(lines) + "\n")


def _cluster(slow: float | None, job_of: dict[str, str] | None = None) -> dict[str, list[Metric]]:
    """Four nodes of eight GPUs at 1.98 GHz (a little spread); GPU 5 of node-03 at ``slow`` if given."""
    window = {}
    for n in range(1, 5):
        node = f"node-0{n}"
        clock = {g: 1.98e9 - 1e6 * ((g + n) % 3) for g in range(8)}
        if slow is not None and node == "node-03":
            clock[5] = slow
        window[node] = _gpus(node, clock, (job_of or {}).get(node, ""))
    return window


def test_a_gpu_apart_from_its_peers_becomes_evidence_only_after_it_persists() -> None:
    history = WindowHistory()
    persist = int(scoring("persistent_deviation.persist_windows"))
    for _ in range(persist - 1):
        window = _cluster(slow=1.2e9)
        derived = history.observe(window, down=())
        assert DEVIATION_WINDOWS not in _names([f for fs in derived.values() for f in fs])
    window = _cluster(slow=1.2e9)
    for node, families in history.observe(window, down=()).items():
        window[node] += families
    report = _report(window)
    top = report["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"]) == (
        "persistent_deviation:fleetscope_gpu_sm_clock_hertz",
        "node-03",
        5,
    )
    assert top["layer"] == "thermal_power" and f"for {persist} windows in a row" in top["summary"]


def test_a_deviation_that_does_not_persist_is_forgotten() -> None:
    history = WindowHistory()
    persist = int(scoring("persistent_deviation.persist_windows"))
    windows = (
        [_cluster(slow=1.2e9)] * (persist - 1)
        + [_cluster(slow=None)]
        + [_cluster(slow=1.2e9)] * (persist - 1)
    )
    for window in windows:
        derived = history.observe(window, down=())
        assert DEVIATION_WINDOWS not in _names([f for fs in derived.values() for f in fs])


def test_peers_are_the_gpus_of_one_job() -> None:
    """Job B runs its GPUs slower than job A (another model): nobody is apart within their own job,
    though read as one cluster every GPU of job B would stand apart."""
    job_of = {"node-01": "A", "node-02": "A", "node-03": "A", "node-04": "B"}
    for jobs, apart in ((job_of, set()), (None, {("node-04", g) for g in range(8)})):
        history = WindowHistory()
        for _ in range(int(scoring("persistent_deviation.persist_windows"))):
            window = _cluster(slow=None, job_of=jobs)
            window["node-04"] = _gpus(
                "node-04", {g: 1.4e9 + 1e6 * (g % 2) for g in range(8)}, "B" if jobs else ""
            )
            derived = history.observe(window, down=())
        named = {
            (node, s.labels["gpu"])
            for node, fs in derived.items()
            for f in fs
            for s in f.samples
            if s.name == DEVIATION_WINDOWS
        }
        assert named == {(node, str(g)) for node, g in apart}


# ------------------------------------------------------------------ stragglers and stalls


def _ranks(
    node: str,
    ranks: dict[int, int],
    wait: dict[int, float],
    steps: float = 100,
    busy: dict[int, float] | None = None,
    step: float = 1.0,
    last: float | None = None,
    number: float | None = None,
) -> list[Metric]:
    """A node's training series in a window: ``ranks`` global rank -> local rank, ``wait`` collective
    wait seconds per rank over ``steps`` steps of ``step`` s each, the last of them numbered ``number``;
    ``busy`` GPU utilisation by local rank; ``last`` the Unix time of every rank's last step."""
    lines = [
        "# TYPE fleetscope_training_rank_info gauge",
        *(
            f'fleetscope_training_rank_info{{job_id="j7",local_rank="{lr}",rank="{r}",world_size="8"}} 1'
            for r, lr in ranks.items()
        ),
        "# TYPE fleetscope_training_steps_total counter",
        *(f'fleetscope_training_steps_total{{rank="{r}"}} {steps}' for r in ranks if steps),
        "# TYPE fleetscope_training_phase_seconds_total counter",
        *(
            f'fleetscope_training_phase_seconds_total{{phase="collective_wait",rank="{r}"}} {wait[r]}'
            for r in ranks
            if steps
        ),
        "# TYPE fleetscope_training_step_duration_seconds histogram",
        *(
            f'fleetscope_training_step_duration_seconds_sum{{rank="{r}"}} {steps * step}'
            for r in ranks
            if steps
        ),
        *(f'fleetscope_training_step_duration_seconds_count{{rank="{r}"}} {steps}' for r in ranks if steps),
    ]
    if number is not None:
        lines += ["# TYPE fleetscope_training_step gauge"]
        lines += [f'fleetscope_training_step{{rank="{r}"}} {number}' for r in ranks]
    if last is not None:
        lines += ["# TYPE fleetscope_training_last_step_timestamp_seconds gauge"]
        lines += [f'fleetscope_training_last_step_timestamp_seconds{{rank="{r}"}} {last}' for r in ranks]
    if busy is not None:
        lines += ["# TYPE fleetscope_gpu_utilization_ratio gauge"]
        lines += [f'fleetscope_gpu_utilization_ratio{{gpu="{g}"}} {u}' for g, u in busy.items()]
    return _families("\n".join(lines) + "\n")


def test_the_rank_that_waits_least_in_collectives_is_the_straggler() -> None:
    wait = {r: 30.0 + r % 2 for r in range(8)}
    wait[6] = 2.0  # the others wait ~0.3 s a step for rank 6
    window = {
        "node-01": _ranks("node-01", {0: 0, 1: 1, 2: 2, 3: 3}, wait),
        "node-02": _ranks("node-02", {4: 0, 5: 1, 6: 2, 7: 3}, wait),
    }
    report = _report(window)
    top = report["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"]) == ("straggler_rank", "node-02", 2)
    assert top["summary"].startswith("Rank 6 of job j7")


def test_ranks_that_barely_wait_name_no_straggler() -> None:
    wait = {r: 0.5 + r % 2 * 0.1 for r in range(8)}
    wait[6] = 0.01
    window = {
        "node-01": _ranks("node-01", {0: 0, 1: 1, 2: 2, 3: 3}, wait),
        "node-02": _ranks("node-02", {4: 0, 5: 1, 6: 2, 7: 3}, wait),
    }
    assert _report(window)["incident"] is False


def test_a_rank_that_stops_stepping_while_its_gpu_idles_is_starved_of_input() -> None:
    history = WindowHistory()
    wait = {r: 10.0 for r in range(8)}
    stepping = {
        "node-01": _ranks("node-01", {0: 0, 1: 1, 2: 2, 3: 3}, wait, busy={g: 0.9 for g in range(4)}),
        "node-02": _ranks("node-02", {4: 0, 5: 1, 6: 2, 7: 3}, wait, busy={g: 0.9 for g in range(4)}),
    }
    history.observe(stepping, down=())
    # Rank 5 starves: every rank stops (they wait for it), its GPU idles, the others spin in the all-reduce.
    stalled = {
        "node-01": _ranks(
            "node-01", {0: 0, 1: 1, 2: 2, 3: 3}, wait, steps=0, busy={g: 1.0 for g in range(4)}
        ),
        "node-02": _ranks(
            "node-02", {4: 0, 5: 1, 6: 2, 7: 3}, wait, steps=0, busy={0: 1.0, 1: 0.0, 2: 1.0, 3: 1.0}
        ),
    }
    for node, families in history.observe(stalled, down=()).items():
        assert _names(families) >= {STALLED}
        stalled[node] += families
    top = _report(stalled)["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"], top["layer"]) == (
        "progress_stall",
        "node-02",
        1,
        "data_pipeline",
    )


def test_ranks_stopped_with_busy_gpus_are_a_hang_symptom_that_a_cause_explains() -> None:
    history = WindowHistory()
    wait = {r: 10.0 for r in range(4)}
    history.observe(
        {"node-01": _ranks("node-01", {0: 0, 1: 1, 2: 2, 3: 3}, wait, busy={g: 0.9 for g in range(4)})},
        down=(),
    )
    window = {
        "node-01": _ranks("node-01", {0: 0, 1: 1, 2: 2, 3: 3}, wait, steps=0, busy={g: 1.0 for g in range(4)})
    }
    for node, families in history.observe(window, down=()).items():
        window[node] += families
    report = _report(window)
    top = report["root_causes"][0]
    assert top["kind"] == "progress_hang" and top["certainty"] == "unsure"
    assert "hung collective" in top["summary"]


def _node_02_apart(wait: float, **node_02: float | None) -> dict[str, list[Metric]]:
    """Three nodes of four ranks of job j7 over 100 steps of 1 s, the last numbered 200; node-02's ranks
    wait ``wait`` s in collectives over the window (the others about 30 s) and take ``node_02``'s
    keyword arguments of :func:`_ranks` (``step``, ``number``)."""
    waits = {r: wait if 4 <= r < 8 else 30.0 + r % 2 for r in range(12)}
    nodes = {"node-01": range(0, 4), "node-02": range(4, 8), "node-03": range(8, 12)}
    return {
        node: _ranks(
            node,
            {r: r % 4 for r in ranks},
            waits,
            **{"number": 200, **(node_02 if node == "node-02" else {})},
        )
        for node, ranks in nodes.items()
    }


def test_a_node_read_over_another_stretch_of_time_names_no_straggler() -> None:
    """node-02's exporter was scraped after the job sped up: its ranks' steps in the window are shorter
    and wait less (0.008 s a step against the others' 0.3 s), which no synchronous rank can do while its
    peers' steps are long."""
    assert _report(_node_02_apart(0.8, step=0.7, number=None))["incident"] is False
    # The same waits at the job's pace: node-02's ranks are the ones the others wait for.
    assert {c["node"] for c in _report(_node_02_apart(0.8, number=None))["root_causes"]} == {"node-02"}


def test_a_node_whose_window_covers_other_steps_names_no_straggler() -> None:
    """node-02's exporter was scraped 30 steps after the others' (a busy collector host): its window
    holds steps 131-230 where its peers' hold 101-200. The pace is the same, but the job slowed in the
    window, so its ranks waited less per step than their peers did over the earlier steps."""
    assert _report(_node_02_apart(2.0, number=230))["incident"] is False
    # Read at the same moments, its ranks are compared, and named.
    assert {c["node"] for c in _report(_node_02_apart(2.0))["root_causes"]} == {"node-02"}
    # A window a tenth of its steps apart is still compared; more is not.
    assert {c["node"] for c in _report(_node_02_apart(2.0, number=210))["root_causes"]} == {"node-02"}
    assert _report(_node_02_apart(2.0, number=211))["incident"] is False


def test_ranks_stopped_while_others_of_their_job_still_step_are_not_yet_a_hang() -> None:
    """node-01's window began after the job stopped, node-02's before: node-02's ranks still took steps.
    A synchronous job stops as a whole, so the hang waits for a window that says so."""
    history = WindowHistory()
    wait = {r: 10.0 for r in range(8)}
    busy = {g: 0.9 for g in range(4)}
    nodes = {"node-01": {0: 0, 1: 1, 2: 2, 3: 3}, "node-02": {4: 0, 5: 1, 6: 2, 7: 3}}
    history.observe({n: _ranks(n, ranks, wait, busy=busy) for n, ranks in nodes.items()}, down=())
    window = {
        "node-01": _ranks("node-01", nodes["node-01"], wait, steps=0, busy=busy),
        "node-02": _ranks("node-02", nodes["node-02"], wait, steps=3, busy=busy),
    }
    for node, families in history.observe(window, down=()).items():
        window[node] += families
    assert _report(window)["incident"] is False
    window = {n: _ranks(n, ranks, wait, steps=0, busy=busy) for n, ranks in nodes.items()}
    for node, families in history.observe(window, down=()).items():
        window[node] += families
    assert _report(window)["root_causes"][0]["kind"] == "progress_hang"


def test_a_rank_whose_last_step_is_far_older_than_its_steps_is_stalled_before_a_whole_window() -> None:
    """Rank 5 starves 20 s before the end of a 5-minute window: every rank stops (they wait for it in the
    all-reduce), all took steps earlier in the window, so no whole window is stepless yet; their last
    steps are old at the source's time of the window, by more than a read's lag and five steps."""
    history = WindowHistory(timedelta(minutes=5))
    wait = {r: 10.0 for r in range(8)}
    nodes = {"node-01": {0: 0, 1: 1, 2: 2, 3: 3}, "node-02": {4: 0, 5: 1, 6: 2, 7: 3}}
    busy = {g: 0.9 for g in range(4)}
    # A source on a clock of its own (a simulation's, or Prometheus's): nothing here reads this machine's.
    t = 2_000_000_000.0
    history.observe(
        {n: _ranks(n, ranks, wait, busy=busy, last=t - 0.5) for n, ranks in nodes.items()},
        down=(),
        times=dict.fromkeys(nodes, t),
    )
    bound = scoring("stragglers.stall_lag_share") * 300 + scoring("stragglers.stall_steps") * 1.0

    def window(age: float) -> dict[str, list[Metric]]:
        """The next window, 300 s on, whose ranks' last steps are ``age`` s old; rank 5's GPU idles."""
        utilization = {"node-01": {g: 1.0 for g in range(4)}, "node-02": {0: 1.0, 1: 0.0, 2: 1.0, 3: 1.0}}
        out = {
            n: _ranks(n, ranks, wait, steps=280, busy=utilization[n], last=t + 300 - age)
            for n, ranks in nodes.items()
        }
        for node, families in history.observe(out, down=(), times=dict.fromkeys(nodes, t + 300)).items():
            out[node] += families
        return out

    early = window(bound - 1)  # a read's lag and a few steps: no stall yet
    assert STALLED_SECONDS not in {name for fs in early.values() for name in _names(fs)}
    assert _report(early)["incident"] is False
    late = window(bound + 1)
    assert {name for fs in late.values() for name in _names(fs)} & {STALLED, STALLED_SECONDS} == {
        STALLED_SECONDS
    }
    top = _report(late)["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"], top["layer"]) == (
        "progress_stall",
        "node-02",
        1,
        "data_pipeline",
    )
    assert f"has taken no step for {bound + 1:.0f} s and its GPU is idle" in top["summary"]


def test_every_rank_paused_alike_waits_for_a_whole_window() -> None:
    """Every rank's GPU idle (a checkpoint written by every rank) or every one busy, steps a minute old:
    a job pauses like this for a while, so only a whole window without a step says more."""
    history = WindowHistory(timedelta(minutes=5))
    wait = {r: 10.0 for r in range(4)}
    t = 1_000_000_000.0
    ranks = {0: 0, 1: 1, 2: 2, 3: 3}
    history.observe(
        {"node-01": _ranks("node-01", ranks, wait, busy={g: 0.9 for g in range(4)}, last=t)},
        down=(),
        times={"node-01": t},
    )
    for utilization in (0.0, 1.0):
        window = {
            "node-01": _ranks(
                "node-01", ranks, wait, steps=200, busy={g: utilization for g in range(4)}, last=t + 240
            )
        }
        derived = history.observe(window, down=(), times={"node-01": t + 400})
        assert STALLED_SECONDS in _names(derived["node-01"])
        window["node-01"] += derived["node-01"]
        assert _report(window)["incident"] is False


def test_a_stall_is_read_at_the_promql_apis_evaluation_time_not_the_collectors_clock(tmp_path: Path) -> None:
    """The simulator's Prometheus-compatible API on a simulated clock years ahead of this machine's: a
    data-loader stall on rank 2 of node 3 is named (node, GPU, layer) at the second cycle after it began,
    15 s apart, within two scrape intervals; at the first its last step is not yet old enough."""
    start = 2_100_000_000.0
    now = {"t": start}
    cluster = SimulatedCluster(
        4, [parse_fault("dataloader_stall@3:2+200", 4)], links=2, start=start, clock=lambda: now["t"]
    )
    api = QueryAPI(cluster).start()
    try:
        source = PromQLSource(api.url, window=timedelta(seconds=60))
        collector = LiveCollector([source], IncidentStore(tmp_path / "i.db"), window=timedelta(seconds=60))
        found = {}
        for cycle in (165, 180, 195, 210, 225):
            now["t"] = start + cycle
            report = collector.run_once()
            found[cycle] = [(c["node"], c["gpu"], c["layer"]) for c in report["root_causes"]]
        snapshot = source.fetch()["sim-node-0001"]
        collector.store.close()
    finally:
        api.stop()
    assert snapshot.time == start + 225  # the answer's evaluation time, the simulated clock's
    assert found[165] == found[180] == found[195] == []
    assert found[210] == []  # 10 s after the stall: a read's lag (15 s of a 60 s window) and five steps
    assert found[225][0] == ("sim-node-0003", 2, "data_pipeline")


def test_a_real_exporters_ranks_that_stop_are_stalled_by_the_age_of_their_last_step(tmp_path: Path) -> None:
    """Four ranks send 10 ms steps through the training hook to a real exporter, then stop. Read at each
    scrape's time (the source's, written with the window), their last steps are young while they step
    and old, by more than a quarter of the 12 s window and five steps, once they have stopped."""
    log = tmp_path / "kern.log"
    log.write_text("")
    with running_exporter(log) as exporter:
        wait_for(lambda: (tmp_path / "training.sock").is_socket())
        hooks = [
            TrainingHook(str(tmp_path / "training.sock"), rank=r, local_rank=r, world_size=4, job_id="j7")
            for r in range(4)
        ]

        def steps(n: int) -> None:
            for hook in hooks:
                for _ in range(n):
                    hook.record(0.01, [0.001, 0.003, 0.004, 0.001, 0.001])
                hook.flush()

        window = timedelta(seconds=12)
        source = ExporterSource([f"node-01=127.0.0.1:{exporter.port}"], window=window)
        collector = LiveCollector(
            [source], IncidentStore(tmp_path / "i.db"), window_dir=tmp_path / "window", window=window
        )
        stalled = []
        for pause in (0.0, 0.0, 4.5):
            steps(5)
            time.sleep(pause)
            collector.run_once()
            text = (tmp_path / "window" / "node-01" / "metrics.prom").read_text()
            stalled.append(
                {ln.split()[0] for ln in text.splitlines() if ln.startswith(STALLED_SECONDS + "{")}
            )
        for hook in hooks:
            hook.close()
    # The first read is a baseline for the counters (no pace yet); the second steps; the third, 4.5 s
    # after the last step (more than 3 s + 5 x 10 ms), finds all four ranks stalled.
    assert stalled[:2] == [set(), set()]
    assert stalled[2] == {f'{STALLED_SECONDS}{{rank="{r}"}}' for r in range(4)}


def test_a_jobs_stalled_ranks_are_forgotten_together() -> None:
    """Rank 1 starves its job; node-02's windows go stepless one window after node-01's (scraped a moment
    apart). After forget_after_windows the job's stall is dropped on both nodes in one window: node-01's
    ranks forgotten alone would leave node-02's busy ones looking like a hang."""
    history = WindowHistory()
    wait = {r: 10.0 for r in range(8)}
    nodes = {"node-01": {0: 0, 1: 1, 2: 2, 3: 3}, "node-02": {4: 0, 5: 1, 6: 2, 7: 3}}
    forget = int(scoring("window_history.forget_after_windows"))
    seen = []
    for number in range(forget + 4):
        stopped = {n: number > (1 if n == "node-01" else 2) for n in nodes}
        busy = {
            n: {g: 0.0 if stopped[n] and (n, g) == ("node-01", 1) else 1.0 for g in range(4)} for n in nodes
        }
        window = {
            n: _ranks(n, ranks, wait, steps=0 if stopped[n] else 100, busy=busy[n])
            for n, ranks in nodes.items()
        }
        derived = history.observe(window, down=())
        counted = {n for n, families in derived.items() if STALLED in _names(families)}
        for node, families in derived.items():
            window[node] += families
        report = _report(window)
        kinds = {c["kind"] for c in report["root_causes"]}
        assert "progress_hang" not in json.dumps(report), number
        seen.append((counted, kinds))
    assert seen[2][0] == {"node-01"} and seen[3][0] == {"node-01", "node-02"}
    assert "progress_stall" in seen[forget + 1][1]  # node-01 at the limit
    # node-01 past the limit, node-02 one window short of it: both dropped at once.
    assert seen[forget + 2][0] == set() and "progress_stall" not in seen[forget + 2][1]


def test_the_first_window_of_a_rank_is_no_stall() -> None:
    history = WindowHistory()
    window = {"node-01": _ranks("node-01", {0: 0}, {0: 1.0}, steps=0)}
    assert STALLED not in _names(history.observe(window, down=()).get("node-01", []))


# ------------------------------------------------------------------ rates over the window


def _rates(text: str, window_s: float | None = 300.0) -> dict[str, Any]:
    families = _families(text)
    if window_s is not None:
        name = "fleetscope_collector_window_seconds"
        families += _families(f"# TYPE {name} gauge\n{name} {window_s}\n")
    return _report({"node-05": families})


def test_an_uncorrectable_ecc_error_in_the_window_is_a_memory_fault() -> None:
    report = _rates(
        "# TYPE fleetscope_gpu_ecc_volatile_uncorrected_errors_total counter\n"
        'fleetscope_gpu_ecc_volatile_uncorrected_errors_total{gpu="3"} 2\n'
    )
    top = report["root_causes"][0]
    assert (top["node"], top["gpu"], top["layer"]) == ("node-05", 3, "gpu_memory")
    (rate,) = [c for c in report["root_causes"] if c["kind"].startswith("rate:")]
    assert rate["kind"] == "rate:fleetscope_gpu_ecc_volatile_uncorrected_errors_total"
    assert "rose by 2 in the last 300 s" in rate["summary"]


def test_link_counters_are_summed_per_gpu_and_judged_per_second() -> None:
    storm = "".join(
        f'fleetscope_nvlink_crc_flit_errors_total{{gpu="1",link="{link}"}} 120\n' for link in range(4)
    )
    info = "# TYPE fleetscope_nvlink_info gauge\n" + "".join(
        f'fleetscope_nvlink_info{{gpu="1",link="{link}",remote_pci_bus_id="0000:{0x1B + link:02x}:00.0"}} 1\n'
        for link in range(4)
    )
    top = _rates("# TYPE fleetscope_nvlink_crc_flit_errors_total counter\n" + storm + info)["root_causes"][0]
    assert (top["layer"], top["gpu"]) == ("nvlink", 1) and "rose by 480 in the last 300 s" in top["summary"]
    assert "on links 0 (to 0000:1b:00.0), 1 (to 0000:1c:00.0)," in top["summary"]
    quiet = "# TYPE fleetscope_nvlink_crc_flit_errors_total counter\n" + storm.replace(" 120", " 20") + info
    assert _rates(quiet)["incident"] is False


def test_thermal_throttle_time_counts_but_power_capping_does_not() -> None:
    text = (
        "# TYPE fleetscope_gpu_clock_event_violation_seconds_total counter\n"
        'fleetscope_gpu_clock_event_violation_seconds_total{gpu="2",reason="thermal"} 90\n'
        'fleetscope_gpu_clock_event_violation_seconds_total{gpu="4",reason="power"} 290\n'
    )
    report = _rates(text)
    assert [(c["kind"], c["gpu"]) for c in report["root_causes"]] == [("rate:throttle:thermal", 2)]


def test_counters_of_a_bundle_are_totals_not_rates() -> None:
    report = _rates(
        "# TYPE fleetscope_gpu_ecc_volatile_uncorrected_errors_total counter\n"
        'fleetscope_gpu_ecc_volatile_uncorrected_errors_total{gpu="3"} 2\n',
        window_s=None,
    )
    assert not any(c["kind"].startswith("rate:") for c in report["root_causes"])


# ------------------------------------------------------------------ topology and sources


def test_a_rank_runs_on_the_gpu_its_local_rank_picks_among_its_jobs_gpus() -> None:
    samples: Iterator[tuple[str | None, str, dict[str, str], float]] = iter(
        [
            ("n1", "fleetscope_gpu_job_info", {"gpu": "4", "job_id": "j1"}, 1.0),
            ("n1", "fleetscope_gpu_job_info", {"gpu": "6", "job_id": "j1"}, 1.0),
            ("n1", "fleetscope_gpu_job_info", {"gpu": "0", "job_id": "j2"}, 1.0),
            ("n1", "fleetscope_training_rank_info", {"rank": "9", "job_id": "j1", "local_rank": "1"}, 1.0),
            ("n1", "fleetscope_nvlink_info", {"gpu": "4", "link": "0"}, 1.0),
            ("n2", "fleetscope_training_rank_info", {"rank": "3", "job_id": "j3", "local_rank": "3"}, 1.0),
        ]
    )
    topology = Topology.from_samples(samples)
    assert topology.ranks[("n1", 9)].gpu == 6
    assert topology.ranks[("n2", 3)].gpu == 3  # no job record: the local rank is the device
    assert topology.groups(["n1", "n2", "n3"]) == {"j1": ["n1"], "j2": ["n1"], "j3": ["n2"], "": ["n3"]}
    assert topology.links[("n1", 4)] == {0: None}


def test_the_engine_reads_a_window_with_the_map_its_history_built() -> None:
    """Nodes that serve the exporter's real ``_info`` series (GPU jobs, ranks, NVLinks, InfiniBand and
    EFA ports): the map the history hands the engine is the map the engine builds from the window's
    evidence, and the report is the same either way."""
    golden = Path(__file__).resolve().parents[1] / "golden"
    files = ("gpu_h200", "jobs", "training", "infiniband_efa_perftest113", "infiniband_node_exporter")
    node = [f for name in files for f in _families((golden / f"{name}.prom").read_text())]
    node += _families(  # as exporters/nvlink.py serves them on a node with NVLink
        "# TYPE fleetscope_nvlink_info gauge\n"
        + "".join(
            f'fleetscope_nvlink_info{{gpu="{g}",link="{n}",remote_pci_bus_id="0000:{24 + g:02x}:00.0"}} 1\n'
            for g in range(8)
            for n in range(2)
        )
    )
    window = {f"node-{n:02d}": node for n in range(1, 4)}
    window["node-02"] = _gpus("node-02", {g: 1.98e9 - 1e9 * (g == 5) for g in range(8)}, "j1")
    history = WindowHistory()
    derived = history.observe(window, down=())
    families = {name: fs + derived.get(name, []) for name, fs in window.items()}
    built = investigate_window(families, {})
    assert history.topology.ranks and history.topology.links and history.topology.nics
    assert Topology.from_evidence(built.evidence) == history.topology
    assert investigate_window(families, {}, history.topology).to_dict() == built.to_dict()


def test_an_instance_whose_series_left_the_promql_api_is_down(tmp_path: Path) -> None:
    """A real HTTP server answering the Prometheus query API: node-b answered at the window's start and
    has no series now (Prometheus marks a failed scrape's series stale); node-c's scrape fails (up 0)."""
    import http.server
    import threading
    from urllib.parse import parse_qs, urlsplit

    def result(instance: str) -> dict[str, Any]:
        metric = {"__name__": "fleetscope_gpu_temperature_celsius", "gpu": "0", "instance": instance}
        return {"metric": metric, "value": [0, "40"]}

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)["query"][0]
            instances = ["node-a:9847", "node-b:9847"] if "offset" in query else ["node-a:9847"]
            results = [result(i) for i in instances]
            if query == "up":  # Prometheus's verdict on each scrape; node-c's fails and never had series
                results = [
                    {"metric": {"__name__": "up", "instance": f"node-{n}:9847"}, "value": [0, v]}
                    for n, v in (("a", "1"), ("c", "0"))
                ]
            body = json.dumps({"status": "success", "data": {"result": results}})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = PromQLSource(f"127.0.0.1:{server.server_address[1]}", window=timedelta(seconds=60))
        assert list(source.fetch()) == ["node-a"] and source.down == ["node-b", "node-c"]
    finally:
        server.shutdown()
        server.server_close()


def test_window_series_survive_the_bundle_round_trip() -> None:
    history = WindowHistory(timedelta(seconds=120))
    history.observe({"a": _gpus("a", {0: 1.0, 1: 1.0})}, down=())
    derived = history.observe({"a": _gpus("a", {0: 1.0})}, down=())
    text = exposition(derived["a"])
    assert f'{GPU_MISSING}{{gpu="1"}} 1.0' in text and "fleetscope_collector_window_seconds 120.0" in text


def test_a_single_bundle_keeps_the_one_snapshot_rule_for_error_counters() -> None:
    """No history in a bundle: one GPU's error counter far above every peer's is still its fault."""
    counts = {g: 3 + g for g in range(8)}
    counts[6] = 52_000
    text = "# TYPE DCGM_FI_DEV_ECC_SBE_VOL_TOTAL counter\n" + "".join(
        f'DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{{gpu="{g}"}} {n}\n' for g, n in counts.items()
    )
    top = _report({"node-09": _families(text)})["root_causes"][0]
    assert (top["kind"], top["gpu"]) == ("peer_deviation:DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 6)
    assert "the other 7 GPUs report a median of 6:" in top["summary"]


def test_the_peers_median_without_one_gpu_is_the_median_of_the_others() -> None:
    values = sorted([5.0, 1.0, 9.0, 3.0, 3.0, 7.0, 2.0])
    for position in range(len(values)):
        others = values[:position] + values[position + 1 :]
        assert _median_without(values, position) == statistics.median(others)


def test_the_ranks_hung_by_a_dead_node_join_its_incident() -> None:
    """node-02 dies; the ranks on node-01 stop stepping with their GPUs spinning in the collective that
    waits for node-02's ranks: one incident, the dead node, with the hang as its symptom."""
    history = WindowHistory()
    wait = {r: 10.0 for r in range(8)}
    busy = {g: 0.9 for g in range(4)}
    history.observe(
        {
            "node-01": _ranks("node-01", {0: 0, 1: 1, 2: 2, 3: 3}, wait, busy=busy),
            "node-02": _ranks("node-02", {4: 0, 5: 1, 6: 2, 7: 3}, wait, busy=busy),
        },
        down=(),
    )
    window = {"node-01": _ranks("node-01", {0: 0, 1: 1, 2: 2, 3: 3}, wait, steps=0, busy=busy)}
    for node, families in history.observe(window, down={"node-02"}).items():
        window.setdefault(node, []).extend(families)
    report = _report(window)
    assert [(c["kind"], c["node"]) for c in report["root_causes"]] == [("absence:node", "node-02")]
    (hang,) = report["symptoms"]
    assert (hang["kind"], hang["explained_by"]) == ("progress_hang", 0)
    assert report["root_causes"][0]["explains"] == 1


def test_idle_gpus_without_work_are_not_compared_with_busy_ones() -> None:
    """node-04's GPUs run nothing: idle clocks and no utilisation are by design, not a fault, where no job
    record says they should be working."""
    history = WindowHistory()
    for _ in range(int(scoring("persistent_deviation.persist_windows")) + 1):
        window = _cluster(slow=None)
        util = "# TYPE fleetscope_gpu_utilization_ratio gauge\n"
        for node in window:
            busy = 0.0 if node == "node-04" else 0.97
            window[node] += _families(
                util + "".join(f'fleetscope_gpu_utilization_ratio{{gpu="{g}"}} {busy}\n' for g in range(8))
            )
        window["node-04"] = [f for f in window["node-04"] if f.name != "fleetscope_gpu_sm_clock_hertz"]
        window["node-04"] += _gpus("node-04", {g: 2.1e8 for g in range(8)})
        derived = history.observe(window, down=())
    assert DEVIATION_WINDOWS not in _names([f for fs in derived.values() for f in fs])


def test_gpus_of_a_failed_gpu_collector_are_not_lost() -> None:
    history = WindowHistory()
    history.observe({"a": _gpus("a", {0: 1.0, 1: 1.0})}, down=())
    name = "fleetscope_scrape_collector_success"
    failed = _families(f'# TYPE {name} gauge\n{name}{{collector="gpu"}} 0\n')
    assert GPU_MISSING not in _names(history.observe({"a": failed}, down=()).get("a", []))
    assert GPU_MISSING in _names(history.observe({"a": _gpus("a", {0: 1.0})}, down=())["a"])


def test_an_efa_port_with_retransmit_timeouts_is_named_with_its_link_layer() -> None:
    text = (
        "# TYPE fleetscope_efa_retransmit_timeout_events_total counter\n"
        'fleetscope_efa_retransmit_timeout_events_total{device="rdmap16s27",port="1"} 4\n'
        'fleetscope_efa_retransmit_timeout_events_total{device="rdmap32s27",port="1"} 0\n'
        "# TYPE fleetscope_infiniband_port_info gauge\n"
        'fleetscope_infiniband_port_info{device="rdmap16s27",port="1",link_layer="Unspecified"} 1\n'
    )
    top = _rates(text)["root_causes"][0]
    assert (top["layer"], top["node"], top["gpu"]) == ("network", "node-05", None)
    assert "rose by 4 in the last 300 s on rdmap16s27 port 1 (Unspecified);" in top["summary"]


def test_a_straggler_rank_found_through_real_exporters_and_training_hooks(tmp_path: Path) -> None:
    """Eight ranks of job j send their step records to two real exporters (four ranks each) through the
    training hook; rank 6 waits least in the all-reduce, so the collector names it, on its node's GPU."""
    logs = [tmp_path / "a" / "kern.log", tmp_path / "b" / "kern.log"]
    for log in logs:
        log.parent.mkdir()
        log.write_text("")
    with running_exporter(logs[0]) as first, running_exporter(logs[1]) as second:
        # The exporters bind their training sockets in a thread; a record sent before that is dropped.
        wait_for(lambda: all((log.parent / "training.sock").is_socket() for log in logs))
        hooks = [
            TrainingHook(
                str(logs[r // 4].parent / "training.sock"),
                rank=r,
                local_rank=r % 4,
                world_size=8,
                job_id="j7",
            )
            for r in range(8)
        ]

        def steps(n: int) -> None:
            for hook in hooks:
                wait = 0.02 if hook.rank == 6 else 0.3 + 0.01 * (hook.rank % 3)
                for _ in range(n):
                    hook.record(1.0, [0.01, 0.3, 0.3, 0.05, wait])
                hook.flush()

        def counts() -> list[float]:
            return [
                value
                for e in (first, second)
                for (name, _), value in samples(
                    urllib.request.urlopen(f"http://127.0.0.1:{e.port}/metrics", timeout=5).read().decode()
                ).items()
                if name == "fleetscope_training_steps_total"
            ]

        def stepped(least: float) -> bool:
            """One more step of every rank, then whether each has ``least`` steps at its exporter. The
            hook drops records a busy exporter cannot take at once (by design), so the ranks step until
            enough arrived; each record carries its own phases, so the waits per step stay right."""
            steps(1)
            now = counts()
            return len(now) == 8 and min(now) >= least

        source = ExporterSource([f"node-01=127.0.0.1:{first.port}", f"node-02=127.0.0.1:{second.port}"])
        collector = LiveCollector([source], IncidentStore(tmp_path / "i.db"))
        wait_for(lambda: stepped(1))
        assert collector.run_once()["incident"] is False  # the first read is a baseline
        baseline = max(counts())
        wait_for(lambda: stepped(baseline + 2 * scoring("stragglers.min_steps")))
        report = collector.run_once()
        for hook in hooks:
            hook.close()
    top = report["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu"]) == ("straggler_rank", "node-02", 2)
    assert top["summary"].startswith("Rank 6 of job j7")
