"""Detection on a simulated cluster: precision, recall and time to incident per fault kind; false
incidents over a healthy run; the cost of one detection pass and the collector's memory at scale.

Run: ``python -m benchmarks.bench_detection [--nodes 64 --nodes 512] [--reps 2] [--healthy-cycles 240]``

The cluster is ``fleetscope simulate``'s (:mod:`fleetscope.simulate`): N nodes of 8 H100s, one
data-parallel job over all of them, served through the simulator's Prometheus-compatible query API, and
read by the live collector as in production at scale (``PromQLSource``: the series now and ``offset`` the
window). Simulated time is stepped, not waited for: the collector runs a cycle every ``--interval``
simulated seconds (15) over a ``--window`` (60), so a run takes the cycles' compute time only.

* Quality, per kind and scale: ``--reps`` runs (a random node and GPU, link, device or rank each, from
  a fixed seed), each a fresh collector and store. The collector first runs ``--warmup`` cycles (3) on
  the healthy cluster, as a running collector has (its history of each node, rank and GPU: what the
  absence, stall and persistent peer-deviation detectors compare against); the fault starts 5 s after
  the last of them and lasts the run, which goes on for ``--after`` cycles (6; with ``--until-found``,
  for large clusters, only until one cycle after an incident named it rightly). A fault is *detected*
  when an incident names its node, GPU (where the kind has one) and layer (where one layer is right);
  recall = detected / injected, precision = right incidents / all incidents opened in that kind's runs,
  warm-up included (``-`` when none opened); every wrong incident is printed on stderr. Time to
  incident = simulated seconds from the fault to the cycle after which an incident first named it
  rightly (node, GPU and layer: an incident opened on the right GPU gets its layer when a later finding
  names one), plus that whole cycle's compute time (the simulated part alone is shown too: the
  compute is what a loaded machine stretches); the goal is two scrape intervals.
* False incidents: a healthy cluster for ``--healthy-cycles`` cycles, incidents opened.
* Cost, in a separate process (one core): the collector alone reading the whole cluster, two cycles;
  *fetch* is the three queries and their parsing, *detection pass* the rest of the cycle (history,
  evidence, detectors, correlator, store), each in wall-clock and in that process's CPU seconds (the
  better of the two cycles); peak RSS of that process (``ru_maxrss``).

NVLinks per GPU default to 2 here (``--links``; a real H100 SXM has 18, which the tests and
``fleetscope simulate`` serve) to fit the 2-core development machine: 18 would multiply the series by
about 2.3. Repetitions are scaled down with the cluster (``--reps`` at the smallest size, 1 above).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.bench_detection_pass import figures_of_child
from fleetscope.collectors.incidents import IncidentStore
from fleetscope.collectors.live import LiveCollector, NodeSnapshot, PromQLSource
from fleetscope.simulate import KINDS, Fault, QueryAPI, SimulatedCluster, node_name

START = 1_800_000_000.0  # Unix time of simulation second 0
QUERY_TIMEOUT = 1800.0  # seconds: a query over thousands of simulated nodes takes minutes on a loaded machine
#: The layer an incident must name for each kind (None where several are right), and whether it must
#: name the GPU (kinds on a GPU, link or rank do; a rank's GPU is its local rank's).
EXPECTED: dict[str, tuple[str | None, bool]] = {
    "xid79": ("gpu_hardware", True),
    "ecc_storm": ("gpu_memory", True),
    "thermal": ("thermal_power", True),
    "nvlink_crc": ("nvlink", True),
    "efa_retransmit": ("network", False),
    "straggler": (None, True),
    "dataloader_stall": ("data_pipeline", True),
    "slow_checkpoint": ("storage", False),
    "dead_node": (None, False),
}


class _Clock:
    """The simulated wall clock, stepped by the benchmark."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class _TimedSource:
    """A source that remembers how long its last fetch took, in wall-clock and CPU seconds."""

    def __init__(self, source: PromQLSource) -> None:
        self.source = source
        self.skipped: list[str] = []
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    @property
    def down(self) -> list[str]:
        return self.source.down

    def fetch(self) -> dict[str, NodeSnapshot]:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            return self.source.fetch()
        finally:
            self.seconds = time.perf_counter() - started
            self.cpu_seconds = time.process_time() - cpu
            self.skipped = self.source.skipped


@dataclass(frozen=True)
class Timing:
    """The collector's schedule in simulated seconds, and the cycles around a fault."""

    interval: float
    window: float
    warmup: int
    after: int
    until_found: bool = False  # end a run one cycle after an incident named the fault rightly


@dataclass
class KindResult:
    """What the runs of one kind at one scale found."""

    injected: int = 0
    detected: int = 0
    incidents: int = 0
    right: int = 0
    latencies: list[float] = field(default_factory=list)
    intervals: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # the simulated part: fault to the cycle
    wrong: list[str] = field(default_factory=list)


def _fault(kind: str, nodes: int, links: int, rng: random.Random, at: float) -> Fault:
    where = KINDS[kind][0]
    return Fault(
        kind,
        rng.randrange(nodes),
        rng.randrange(4) if where == "device" else 0 if where == "node" else rng.randrange(8),
        rng.randrange(links) if kind == "nvlink_crc" else 0,
        at,
    )


def _collector(url: str, window: float, folder: Path) -> tuple[LiveCollector, _TimedSource]:
    """A collector as ``fleetscope collect --prometheus URL --window SECONDS`` runs it, without the
    window written out (the cycles hand samples straight to the engine either way)."""
    span = timedelta(seconds=window)
    source = _TimedSource(PromQLSource(url, timeout=QUERY_TIMEOUT, window=span))
    return LiveCollector([source], IncidentStore(folder / "incidents.db"), window=span), source


def _is_right(incident: Any, fault: Fault) -> bool:
    layer, has_gpu = EXPECTED[fault.kind]
    return (
        incident.node == node_name(fault.node)
        and (not has_gpu or incident.gpu == fault.where)
        and (layer is None or incident.layer == layer)
    )


def quality(nodes: int, kind: str, reps: int, links: int, timing: Timing, seed: int) -> KindResult:
    """Inject ``kind`` ``reps`` times into a cluster of ``nodes`` and score what the collector opened."""
    result = KindResult()
    rng = random.Random(f"{seed}-{nodes}-{kind}")
    cycles = [timing.window + k * timing.interval for k in range(timing.warmup + timing.after)]
    onset = cycles[timing.warmup - 1] + 5.0 if timing.warmup else cycles[0] - timing.interval + 5.0
    for _ in range(reps):
        fault = _fault(kind, nodes, links, rng, onset)
        clock = _Clock()
        cluster = SimulatedCluster(nodes, [fault], scenario="bench", links=links, start=START, clock=clock)
        api = QueryAPI(cluster).start()
        try:
            with tempfile.TemporaryDirectory() as folder:
                collector, _ = _collector(api.url, timing.window, Path(folder))
                # When each incident first named the fault rightly (one incident may name its node and
                # GPU a cycle or two before a later finding adds the layer).
                right_at: dict[str, tuple[float, float]] = {}  # (simulated wait, the cycle's compute)
                spare = 1  # cycles to run after that, with timing.until_found
                for cycle in cycles:
                    clock.now = START + cycle
                    started = time.perf_counter()
                    collector.run_once()
                    took = time.perf_counter() - started
                    for incident in collector.store.recent(state=None):
                        if incident.fingerprint not in right_at and _is_right(incident, fault):
                            right_at[incident.fingerprint] = (cycle - onset, took)
                    if timing.until_found and right_at:
                        if spare == 0:
                            break
                        spare -= 1
                found = collector.store.recent(state=None)
                collector.store.close()
        finally:
            api.stop()
        result.injected += 1
        result.incidents += len(found)
        right = [i for i in found if _is_right(i, fault)]
        result.right += len(right)
        result.wrong.extend(i.summary[:300] for i in found if not _is_right(i, fault))
        if right:
            result.detected += 1
            wait, took = min(right_at.values())
            result.waits.append(wait)
            result.latencies.append(wait + took)
            result.intervals.append((wait + took) / timing.interval)
    return result


def healthy(nodes: int, cycles: int, links: int, timing: Timing) -> tuple[int, float, list[str]]:
    """Run a healthy cluster for ``cycles`` cycles; returns (incidents opened, simulated minutes, their
    summaries)."""
    clock = _Clock()
    cluster = SimulatedCluster(nodes, [], scenario="bench-healthy", links=links, start=START, clock=clock)
    api = QueryAPI(cluster).start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            collector, _ = _collector(api.url, timing.window, Path(folder))
            for number in range(cycles):
                clock.now = START + timing.window + number * timing.interval
                collector.run_once()
            opened = collector.store.recent(limit=1000, state=None)
            collector.store.close()
    finally:
        api.stop()
    return len(opened), cycles * timing.interval / 60, [i.summary[:300] for i in opened]


def cost(nodes: int, links: int, window: float) -> dict[str, float]:
    """The collector alone, in its own process, reading a healthy cluster of ``nodes``: two cycles."""
    clock = _Clock()
    clock.now = START + window + 30
    cluster = SimulatedCluster(nodes, [], scenario="bench-cost", links=links, start=START, clock=clock)
    return figures_of_child(
        cluster,
        lambda url: ["benchmarks.bench_detection", "--collector-only", url, "--window", str(window)],
        "collector",
    )


def _collector_only(url: str, window: float) -> None:
    """The child of :func:`cost`: two cycles, then the figures as one JSON line (the better cycle of
    each figure; CPU seconds are this process's alone, which a loaded machine stretches less than the
    wall clock)."""
    figures: dict[str, list[float]] = {"fetch_s": [], "fetch_cpu_s": [], "pass_s": [], "pass_cpu_s": []}
    with tempfile.TemporaryDirectory() as folder:
        collector, source = _collector(url, window, Path(folder))
        for _ in range(2):
            started, cpu = time.perf_counter(), time.process_time()
            collector.run_once()
            figures["fetch_s"].append(source.seconds)
            figures["fetch_cpu_s"].append(source.cpu_seconds)
            figures["pass_s"].append(time.perf_counter() - started - source.seconds)
            figures["pass_cpu_s"].append(time.process_time() - cpu - source.cpu_seconds)
        collector.store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({**{name: min(values) for name, values in figures.items()}, "rss_mb": peak}))


def _cell(values: Sequence[float], unit: str = "s") -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} {unit} (max {max(values):.1f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, action="append", help="cluster sizes (default 64, 512, 2048)")
    parser.add_argument("--reps", type=int, default=2, help="runs per kind at the smallest size (1 above)")
    parser.add_argument(
        "--healthy-cycles", type=int, default=240, help="cycles of the healthy run, smallest size"
    )
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), help="fault kinds (default: all)")
    parser.add_argument("--links", type=int, default=2, help="NVLinks per GPU (18 on H100 SXM)")
    parser.add_argument("--interval", type=float, default=15.0, help="simulated seconds between cycles")
    parser.add_argument("--window", type=float, default=60.0, help="the collector's window, seconds")
    parser.add_argument("--warmup", type=int, default=3, help="healthy cycles before each fault")
    parser.add_argument("--after", type=int, default=6, help="cycles from each fault's start")
    parser.add_argument(
        "--until-found",
        action="store_true",
        help="end a run one cycle after an incident named the fault rightly (large clusters; precision then "
        "covers fewer cycles)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-quality", action="store_true", help="skip precision, recall and time")
    parser.add_argument("--no-healthy", action="store_true", help="skip the healthy run")
    parser.add_argument("--no-cost", action="store_true", help="skip the one-pass cost and RSS")
    parser.add_argument("--collector-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.getLogger("fleetscope").setLevel(logging.ERROR)  # the collector's lines per incident and cycle
    if args.collector_only:
        _collector_only(args.collector_only, args.window)
        return
    if args.warmup < 0 or args.after < 1 or args.interval <= 0 or args.window <= 0:
        parser.error("--warmup must be 0 or more, --after 1 or more, --interval and --window above 0")
    timing = Timing(args.interval, args.window, args.warmup, args.after, args.until_found)
    sizes = sorted(args.nodes or [64, 512, 2048])
    print(
        f"{args.interval:g} s between cycles, {args.window:g} s window, {args.links} NVLinks per GPU, "
        f"{args.warmup} healthy cycles before each fault and {args.after} from its start"
        + (", a run ending one cycle after an incident named the fault" if args.until_found else "")
        + "\n"
    )
    print(
        "| nodes | kind | runs | recall | precision | time to incident (median, max) | of it simulated "
        "| in scrape intervals |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for nodes in [] if args.no_quality else sizes:
        reps = args.reps if nodes == sizes[0] else 1
        for kind in args.kinds:
            r = quality(nodes, kind, reps, args.links, timing, args.seed)
            precision = f"{r.right / r.incidents:.2f}" if r.incidents else "-"
            print(
                f"| {nodes:,} | {kind} | {r.injected} | {r.detected / r.injected:.2f} | {precision} | "
                f"{_cell(r.latencies)} | {_cell(r.waits)} | {_cell(r.intervals, 'x')} |",
                flush=True,
            )
            for summary in r.wrong:
                print(f"  {nodes} nodes, {kind}: wrong incident: {summary}", file=sys.stderr, flush=True)
    print("\n| nodes | healthy cycles | simulated minutes | false incidents |")
    print("|---|---|---|---|")
    for nodes in [] if args.no_healthy else sizes[:1]:
        opened, minutes, summaries = healthy(nodes, args.healthy_cycles, args.links, timing)
        print(f"| {nodes:,} | {args.healthy_cycles} | {minutes:.0f} | {opened} |", flush=True)
        for summary in summaries:
            print(f"  {nodes} nodes, healthy: false incident: {summary}", file=sys.stderr, flush=True)
    if args.no_cost:
        return
    print(
        "\n| nodes | GPUs | fetch (3 queries, parsed): wall, CPU | detection pass: wall, CPU "
        "| collector peak RSS |"
    )
    print("|---|---|---|---|---|")
    for nodes in sizes:
        f = cost(nodes, args.links, args.window)
        print(
            f"| {nodes:,} | {nodes * 8:,} | {f['fetch_s']:.1f} s, {f['fetch_cpu_s']:.1f} s | "
            f"{f['pass_s']:.1f} s, {f['pass_cpu_s']:.1f} s | {f['rss_mb']:,.0f} MB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
