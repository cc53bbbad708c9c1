"""Exporter cost: scrape CPU time and latency with every collector on, against prometheus-client serving
the same series statically; the exporter's RSS; the training hook's cost per step.

Run: ``python -m benchmarks.bench_exporter [--gpus 8] [--efa 4] [--ranks 8] [--scrapes 200]``

The node: ``--gpus`` GPUs on the fake NVML (readings of a real H200 node, 18 NVLinks each, repeated),
``--efa`` EFA devices (copies of the real EFA sysfs tree in ``tests/fixtures/infiniband``), ``--ranks``
training ranks that have sent records, a Slurm job mapping file, the fixture ``/proc`` and a kernel log.
Every collector but ``netprobe`` (which needs peer nodes) is on; the NVLink probe is off (no CUDA here).

* scrape: ``generate_latest`` of the exporter's registry against a registry of plain ``Gauge`` and
  ``Counter`` objects (histograms as pre-built families) holding the same series and values. CPU time is
  the process's, all threads included (``time.process_time``), per scrape; latency is wall time.
* the fake NVML's share: the fake is Python, where the real library works in C (and in the driver), so
  a second pass wraps it in :class:`TimedNvml`, which adds up the CPU time spent inside its calls (each
  calling thread's own clock), and reports it per scrape, with the exporter's CPU time less that share.
  The wrapper's own cost stays out of both: the ratio pass runs the fake unwrapped.
* RSS: a fresh Python process builds that exporter, scrapes it ``--scrapes`` times, reports its peak RSS
  (and, for scale, the peak RSS of a bare interpreter that imported prometheus-client).
* hook: ``TrainingHook.step()`` with three timed phases and a loss, timed on the training thread between
  half-millisecond stretches of GIL-free "compute", with a collector receiving (exporter up) and with
  nothing listening (exporter down: every record dropped and counted).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


class _Static:
    """Serves pre-built families (the baseline's histograms: prometheus-client cannot set bucket counts)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def static_copy(exposition: str) -> CollectorRegistry:
    """A registry of plain client metrics with the same families, labels and values."""
    disable_created_metrics()  # the client's counters would add _created series that ours lack
    registry = CollectorRegistry()
    histograms = []
    for family in text_string_to_metric_families(exposition):
        labels = sorted({k for s in family.samples for k in s.labels})
        if family.type == "histogram":
            histograms.append(family)
        elif family.type == "counter":
            counter = Counter(family.name, family.documentation, labels, registry=registry)
            for s in family.samples:
                if s.name.endswith("_total"):
                    (counter.labels(**s.labels) if labels else counter).inc(s.value)
        else:
            gauge = Gauge(family.name, family.documentation, labels, registry=registry)
            for s in family.samples:
                (gauge.labels(**s.labels) if labels else gauge).set(s.value)
    registry.register(_Static(histograms))
    return registry


class TimedNvml:
    """The fake NVML with the CPU time spent inside each of its ``nvml*`` calls added up.

    Args:
        nvml: The fake NVML module.
    """

    def __init__(self, nvml: object) -> None:
        self._nvml = nvml
        self._spent: list[float] = []  # list.append is atomic: GPU worker threads call at once

    @property
    def seconds(self) -> float:
        """CPU seconds spent inside the fake so far, all threads."""
        return sum(self._spent)

    def __getattr__(self, name: str) -> object:
        value = getattr(self._nvml, name)
        if not name.startswith("nvml") or not callable(value):
            return value  # constants, error classes, structures

        def timed(*args: object) -> object:
            start = time.thread_time()
            try:
                return value(*args)
            finally:
                self._spent.append(time.thread_time() - start)

        return timed


def build_node(root: Path, gpus: int, efa: int, ranks: int, timed: bool = False) -> tuple[object, object]:
    """The benchmark node in ``root``: returns (exporter, NVML it uses); the exporter is started.

    Args:
        timed: Wrap the fake NVML in :class:`TimedNvml`.
    """
    from fleetscope.exporters.config import ExporterConfig
    from fleetscope.exporters.server import Exporter
    from fleetscope.exporters.training import PHASES, RECORD
    from tests.exporters.fake_nvml import FakeNvml

    sysfs = root / "sys"
    (sysfs / "class").mkdir(parents=True)
    shutil.copytree(FIXTURES / "sysfs" / "class" / "net", sysfs / "class" / "net")
    device = FIXTURES / "infiniband" / "efa_awsdocs" / "class" / "infiniband" / "rdmap0s31"
    for i in range(efa):
        shutil.copytree(device, sysfs / "class" / "infiniband" / f"rdmap{i}s31")
    jobs = root / "jobs"
    jobs.mkdir()
    mapping = {"job_id": "4242", "step_id": "0", "user": "u", "gpus": list(range(gpus)), "uuids": []}
    (jobs / "4242.json").write_text(json.dumps({**mapping, "started_at": "2026-11-30T09:00:00Z"}))
    log = root / "kern.log"
    log.write_bytes(b"".join(p.read_bytes() for p in sorted((FIXTURES / "kernel-log").glob("*.log"))))
    nvml = FakeNvml.from_capture(FIXTURES / "nvidia-smi" / "linux-x86_64__nvidia-h200__590.48.01.txt")
    nvml.gpus = (nvml.gpus * gpus)[:gpus]
    used: object = TimedNvml(nvml) if timed else nvml
    config = ExporterConfig.model_validate(
        {
            "listen_address": "127.0.0.1:0",
            "path_procfs": str(FIXTURES / "procfs"),
            "path_sysfs": str(sysfs),
            "xid_kernel_log": str(log),
            "jobs_mapping_dir": str(jobs),
            "training_socket": str(root / "training.sock"),
            "nvlink_probe_interval_seconds": 0,
        }
    )
    exporter = Exporter(config, nvml=used).start()
    training = exporter.collectors["training"]  # type: ignore[attr-defined]
    for rank in range(ranks):
        for step in range(1, 51):
            phases = [0.001, 0.03, 0.06, 0.01, 0.02][: len(PHASES)]
            training.feed(
                RECORD.pack(b"FSTR", 1, step, rank, rank % 8, ranks, 0.13, *phases, 64.0, 0.0, 1.0, 0)
            )
    time.sleep(1.0)  # the Xid watcher reads the kernel log; the training socket binds
    generate_latest(exporter.registry)  # type: ignore[attr-defined]
    generate_latest(exporter.registry)  # type: ignore[attr-defined]  # second: nvlink sees the GPU handles
    return exporter, used


def fake_share(root: Path, gpus: int, efa: int, ranks: int, scrapes: int) -> tuple[float, float]:
    """CPU milliseconds per scrape: (the exporter's, all threads, inside the fake NVML)."""
    exporter, nvml = build_node(root, gpus, efa, ranks, timed=True)
    assert isinstance(nvml, TimedNvml)
    registry = exporter.registry  # type: ignore[attr-defined]
    generate_latest(registry)
    before, cpu_start = nvml.seconds, time.process_time()
    for _ in range(scrapes):
        generate_latest(registry)
    cpu, inside = time.process_time() - cpu_start, nvml.seconds - before
    exporter.stop()  # type: ignore[attr-defined]
    return cpu * 1000 / scrapes, inside * 1000 / scrapes


def scrape_costs(registry: CollectorRegistry, scrapes: int) -> tuple[list[float], float]:
    """Wall milliseconds per scrape, and CPU milliseconds per scrape (all threads)."""
    generate_latest(registry)
    walls = []
    cpu_start = time.process_time()
    for _ in range(scrapes):
        start = time.perf_counter()
        generate_latest(registry)
        walls.append((time.perf_counter() - start) * 1000)
    return walls, (time.process_time() - cpu_start) * 1000 / scrapes


def series(exposition: bytes) -> int:
    return sum(1 for line in exposition.decode().splitlines() if line and not line.startswith("#"))


def hook_cost(root: Path, steps: int, up: bool, compute: bool = True) -> tuple[float, float]:
    """Microseconds per step spent in the hook on the training thread: (median, mean).

    Each step: half a millisecond of "compute" that releases the GIL (a sleep, as torch's kernels do),
    then the hook's calls as a training loop makes them (step, three phases, loss), timed on their own.
    Without ``compute`` the steps run back to back (caches warm: the hook's floor).
    """
    from fleetscope.exporters.training import TrainingCollector, TrainingHook

    path = root / ("up.sock" if up else "down.sock")
    collector = TrainingCollector(path).start() if up else None
    while up and not path.is_socket():
        time.sleep(0.01)
    hook = TrainingHook(str(path), rank=0)
    spent: list[float] = []
    try:
        for _ in range(steps):
            if compute:
                time.sleep(0.0005)
            start = time.perf_counter()
            with hook.step(samples=64) as step:
                with step.phase("forward"):
                    pass
                with step.phase("backward"):
                    pass
                with step.phase("optimizer"):
                    pass
                step.loss = 0.5
            spent.append(time.perf_counter() - start)
        hook.flush()
    finally:
        hook.close()
        if collector is not None:
            collector.close()
    assert (hook.dropped == steps) != up, "exporter up must receive, down must drop"
    return statistics.median(spent) * 1e6, statistics.mean(spent) * 1e6


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux keeps that across execve, so a
    child started from a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_child(gpus: int, efa: int, ranks: int, scrapes: int) -> None:
    """Runs in a fresh process: build the node, scrape, print peak RSS in MB as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        exporter, _ = build_node(Path(tmp), gpus, efa, ranks)
        for _ in range(scrapes):
            generate_latest(exporter.registry)  # type: ignore[attr-defined]
        peak = peak_rss_mb()
        exporter.stop()  # type: ignore[attr-defined]
    print(json.dumps({"rss_mb": peak}))


def _child_rss(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rss_mb"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--efa", type=int, default=4)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--hook-steps", type=int, default=5000)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        exporter, _ = build_node(Path(tmp), args.gpus, args.efa, args.ranks)
        live = exporter.registry  # type: ignore[attr-defined]
        exposition = generate_latest(live)
        static = static_copy(exposition.decode())
        assert series(generate_latest(static)) == series(exposition), "baseline must hold the same series"
        ours, ours_cpu = scrape_costs(live, args.scrapes)
        baseline, baseline_cpu = scrape_costs(static, args.scrapes)
        exporter.stop()  # type: ignore[attr-defined]
        timed_root = Path(tmp) / "timed"
        timed_root.mkdir()
        timed_cpu, in_fake = fake_share(timed_root, args.gpus, args.efa, args.ranks, args.scrapes)
        hook_up = hook_cost(Path(tmp), args.hook_steps, up=True)
        hook_down = hook_cost(Path(tmp), args.hook_steps, up=False)
        hook_warm = hook_cost(Path(tmp), args.hook_steps, up=True, compute=False)

    bench = "from benchmarks.bench_exporter import rss_child; "
    rss = _child_rss(bench + f"rss_child({args.gpus}, {args.efa}, {args.ranks}, {args.scrapes})")
    bare = _child_rss(
        "import json, prometheus_client; from benchmarks.bench_exporter import peak_rss_mb; "
        "print(json.dumps({'rss_mb': peak_rss_mb()}))"
    )

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[18]

    node = f"{args.gpus} GPUs (fake NVML, H200 readings), {args.efa} EFA devices, {args.ranks} ranks"
    print(f"Exporter, every collector on: {node}; {series(exposition)} series, {args.scrapes} scrapes each")
    print(f"(load average {load_start:.1f} when the run began, {os.getloadavg()[0]:.1f} when it ended)")
    print("| measure | fleetscope exporter | static prometheus-client registry | ratio |")
    print("|---|---|---|---|")
    print(
        f"| scrape CPU time (all threads) | {ours_cpu:.2f} ms | {baseline_cpu:.2f} ms "
        f"| {ours_cpu / baseline_cpu:.2f}x |"
    )
    print(
        f"| scrape latency, median | {statistics.median(ours):.2f} ms | {statistics.median(baseline):.2f} ms "
        f"| {statistics.median(ours) / statistics.median(baseline):.2f}x |"
    )
    ratio = p95(ours) / p95(baseline)
    print(f"| scrape latency, p95 | {p95(ours):.2f} ms | {p95(baseline):.2f} ms | {ratio:.2f}x |")
    # The wrapped pass: the fake's share of its own CPU time, applied to the unwrapped pass's figure.
    share = in_fake / timed_cpu
    own = ours_cpu * (1 - share)
    print(
        f"| scrape CPU time inside the fake NVML (Python; the real library is C) | {in_fake:.2f} ms "
        f"({share:.0%} of {timed_cpu:.2f} ms in the timed pass) | | |"
    )
    print(
        f"| scrape CPU time less the fake NVML's share | {own:.2f} ms | {baseline_cpu:.2f} ms "
        f"| {own / baseline_cpu:.2f}x |"
    )
    print(f"| peak RSS of the process | {rss:.0f} MB | {bare:.0f} MB (bare interpreter + client) | |")
    for state, (median, mean) in (
        ("up", hook_up),
        ("down", hook_down),
        ("up, steps back to back", hook_warm),
    ):
        print(
            f"| training hook per step, exporter {state} (median / mean) | {median:.1f} / {mean:.1f} us | | |"
        )


if __name__ == "__main__":
    main()
