"""One live detection pass over N nodes of 8 GPUs, and one PromQL fetch: the collector's CPU at scale.

**The pass.** Each node's window is what a real exporter serves (the fake NVML with real H100 readings,
the fixture ``/proc`` and ``/sys``) scraped twice 300 s apart and turned into a window (counters as
increases), plus eight training ranks' series; one GPU runs slow and one rank waits least, so the
peer-deviation and straggler paths do real work. Per size the pass runs as many windows as a deviation
needs to persist; the last window is timed as the collector runs it (cyclic garbage collector paused,
:func:`fleetscope.collectors.live.gc_paused`): ``WindowHistory.observe`` (absence, peers, stalls), then
``investigate_window`` (evidence of the series detectors read, detectors, correlator; handed the map of
the cluster the history built, as the collector hands it), on one core in this process; then the same
window again with the garbage collector left running, for comparison. The table gives seconds per part,
microseconds per sample (flat when the pass is linear in nodes) and the process's peak RSS.

**The fetch.** ``PromQLSource.fetch`` of a healthy simulated cluster (``fleetscope.simulate``'s
Prometheus-compatible API, served from this process) run in a process of its own, so that its CPU
seconds and peak RSS are the collector's alone, whatever the simulator costs (its answers pass through
a temporary file, whose pages are the kernel's cache, not the process's RSS).

    python -m benchmarks.bench_detection_pass --nodes 64 --nodes 512 --nodes 2048 --fetch-nodes 512
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from fleetscope.collectors.history import WindowHistory
from fleetscope.collectors.investigate import investigate_window
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.live import PromQLSource, gc_paused, window_families
from fleetscope.simulate.cluster import SimulatedCluster
from fleetscope.simulate.serve import QueryAPI
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_X8, running_exporter

START = 1_800_000_000.0  # Unix time of simulation second 0; the fetch is 330 s later (a full window)


def node_window() -> list[Metric]:
    """One node's window from a real exporter: two scrapes 300 s apart (fake NVML clock)."""
    nvml = FakeNvml.from_capture(H100_X8)
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "kern.log"
        log.write_text("")
        with running_exporter(log, nvml) as exporter:
            url = f"http://127.0.0.1:{exporter.port}/metrics"
            first = urllib.request.urlopen(url, timeout=30).read().decode()
            nvml.advance(300)
            second = urllib.request.urlopen(url, timeout=30).read().decode()
    _, start = window_families(first, None)
    families, _ = window_families(second, start)
    return families


def training(node: int, slow_gpu: bool) -> list[Metric]:
    lines = []
    for local in range(8):
        rank = 8 * node + local
        wait = 2.0 if slow_gpu and local == 3 else 30.0 + local % 2
        lines += [
            f'fleetscope_training_rank_info{{job_id="bench",local_rank="{local}",rank="{rank}",'
            'world_size="16384"} 1',
            f'fleetscope_training_steps_total{{rank="{rank}"}} 100',
            f'fleetscope_training_phase_seconds_total{{phase="collective_wait",rank="{rank}"}} {wait}',
            f'fleetscope_training_step_duration_seconds_sum{{rank="{rank}"}} 100',
        ]
    return list(text_string_to_metric_families("\n".join(lines) + "\n"))


def busy(families: list[Metric], slow: bool) -> list[Metric]:
    """The node's families with every GPU 95% busy (the capture is of idle GPUs) and, if ``slow``, GPU 5's
    SM clock at 60% of what it read."""
    clock = GaugeMetricFamily("fleetscope_gpu_sm_clock_hertz", "SM clock", labels=["gpu"])
    utilization = GaugeMetricFamily("fleetscope_gpu_utilization_ratio", "busy", labels=["gpu"])
    for family in families:
        if family.name == "fleetscope_gpu_sm_clock_hertz":
            for sample in family.samples:
                gpu = sample.labels["gpu"]
                clock.add_metric([gpu], sample.value * (0.6 if slow and gpu == "5" else 1.0))
                utilization.add_metric([gpu], 0.95)
    replaced = ("fleetscope_gpu_sm_clock_hertz", "fleetscope_gpu_utilization_ratio")
    return [f for f in families if f.name not in replaced] + [clock, utilization]


def run(nodes: int, base: list[Metric]) -> dict[str, float]:
    slow, normal = busy(base, slow=True), busy(base, slow=False)
    window = {
        f"node-{n:05d}": (slow if n == 7 else normal) + training(n, slow_gpu=n == 5) for n in range(nodes)
    }
    investigate_window({"warm-up": normal}, {})  # the knowledge files load once per process, not per pass
    history = WindowHistory(timedelta(minutes=5))
    for _ in range(int(scoring("persistent_deviation.persist_windows")) - 1):
        history.observe(window, down=())
    with gc_paused():
        started = time.process_time()
        derived = history.observe(window, down=())
        observed = time.process_time()
        families = {node: families + derived.get(node, []) for node, families in window.items()}
        report = investigate_window(families, {}, history.topology).to_dict()
        done = time.process_time()
    causes = {c["kind"] for c in report["root_causes"]}
    assert "straggler_rank" in causes and any(k.startswith("persistent_deviation") for k in causes), causes
    again = time.process_time()  # the same window, the garbage collector running
    history.observe(window, down=())
    again_report = investigate_window(families, {}, history.topology).to_dict()
    assert {c["kind"] for c in again_report["root_causes"]} == causes
    return {
        "samples": sum(len(f.samples) for fs in families.values() for f in fs),
        "observe": observed - started,
        "engine": done - observed,
        "total": done - started,
        "gc": time.process_time() - again,
    }


def fetch_cost(nodes: int) -> dict[str, float]:
    """One ``PromQLSource.fetch`` of a healthy simulated cluster of ``nodes``, in a child process."""
    cluster = SimulatedCluster(nodes, [], scenario="bench-fetch", start=START, clock=lambda: START + 330)
    return figures_of_child(
        cluster, lambda url: ["benchmarks.bench_detection_pass", "--fetch-only", url], "fetch"
    )


def figures_of_child(
    cluster: SimulatedCluster, argv: Callable[[str], list[str]], what: str
) -> dict[str, float]:
    """Serve ``cluster`` as a Prometheus-compatible API and run ``python -m *argv(url)`` against it in a
    process of its own (so its CPU time and memory are its own); return the figures the child prints as
    its last line (a JSON object). Raises SystemExit naming ``what`` when the child fails."""
    api = QueryAPI(cluster).start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", *argv(api.url)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        api.stop()
    if done.returncode != 0:
        raise SystemExit(f"the {what} process failed: {done.stderr.strip()[-2000:]}")
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return figures


def _fetch_only(url: str) -> None:
    """The child of :func:`fetch_cost`: one fetch, then its figures as one JSON line."""
    source = PromQLSource(url, timeout=3600, window=timedelta(seconds=300))
    started = time.process_time()
    nodes = source.fetch()
    cpu = time.process_time() - started
    samples = sum(len(f.samples) for snapshot in nodes.values() for f in snapshot.families)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"nodes": len(nodes), "samples": samples, "cpu": cpu, "rss": rss}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes", type=int, action="append", help="cluster sizes of the pass (repeat); default 64 512 2048"
    )
    parser.add_argument(
        "--fetch-nodes", type=int, action="append", help="cluster sizes of the fetch (repeat); default 512"
    )
    parser.add_argument("--fetch-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fetch_only:
        _fetch_only(args.fetch_only)
        return
    base = node_window()
    print(
        "| nodes x 8 GPUs | samples | history (s) | engine (s) | pass, CPU s | µs per sample | peak RSS "
        "| pass with the GC running, CPU s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for nodes in args.nodes or [64, 512, 2048]:
        row = run(nodes, base)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"| {nodes:,} | {row['samples']:,.0f} | {row['observe']:.2f} | {row['engine']:.2f} | "
            f"{row['total']:.2f} | {1e6 * row['total'] / row['samples']:.1f} | {rss:.0f} MB | "
            f"{row['gc']:.2f} |"
        )
    print(
        "\n| nodes x 8 GPUs | samples in the window | fetch, collector CPU s | µs per sample "
        "| collector peak RSS |"
    )
    print("|---:|---:|---:|---:|---:|")
    for nodes in args.fetch_nodes or [512]:
        figures = fetch_cost(nodes)
        print(
            f"| {nodes:,} | {figures['samples']:,.0f} | {figures['cpu']:.2f} | "
            f"{1e6 * figures['cpu'] / figures['samples']:.1f} | {figures['rss']:.0f} MB |"
        )


if __name__ == "__main__":
    main()
