"""Scrape cost of the GPU collector against prometheus-client serving the same series statically.

Run: ``python -m benchmarks.bench_exporter [--gpus 8] [--scrapes 200]``

Both sides are timed as ``generate_latest(registry)``. The fleetscope side runs the GPU collector on the
fake NVML (readings of a real 8x H100 node, repeated to the requested GPU count), so every scrape goes
through the per-GPU worker threads, the deadline wait and fresh metric families; the fake's NVML calls
cost next to nothing, so the figure is the collector's own overhead, not the driver's. The baseline is a
plain registry of ``Gauge``/``Counter`` objects holding the same series and values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleetscope.exporters.gpu import GpuCollector
from fleetscope.exporters.scrape import ScrapeCollector
from tests.exporters.fake_nvml import FakeNvml

CAPTURE = (
    Path(__file__).resolve().parent.parent / "tests/fixtures/nvidia-smi/h100-sxm-80gb-x8_drv565.57.01.txt"
)


def static_copy(exposition: str) -> CollectorRegistry:
    """A registry of plain client metrics with the same families, labels and values."""
    disable_created_metrics()  # the client's counters would add _created series that ours lack
    registry = CollectorRegistry()
    for family in text_string_to_metric_families(exposition):
        labels = sorted({k for s in family.samples for k in s.labels})
        if family.type == "counter":
            counter = Counter(family.name, family.documentation, labels, registry=registry)
            for s in family.samples:
                if s.name.endswith("_total"):
                    (counter.labels(**s.labels) if labels else counter).inc(s.value)
        else:
            gauge = Gauge(family.name, family.documentation, labels, registry=registry)
            for s in family.samples:
                (gauge.labels(**s.labels) if labels else gauge).set(s.value)
    return registry


def timings(registry: CollectorRegistry, scrapes: int) -> list[float]:
    generate_latest(registry)  # warm up: NVML init, worker threads
    result = []
    for _ in range(scrapes):
        start = time.perf_counter()
        generate_latest(registry)
        result.append((time.perf_counter() - start) * 1000)
    return result


def series(exposition: bytes) -> int:
    return sum(1 for line in exposition.decode().splitlines() if line and not line.startswith("#"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args(argv)

    fake = FakeNvml.from_capture(CAPTURE)
    fake.gpus = (fake.gpus * (args.gpus // len(fake.gpus) + 1))[: args.gpus]
    collector = GpuCollector(fake)
    live = CollectorRegistry()
    live.register(ScrapeCollector([collector]))
    exposition = generate_latest(live)
    static = static_copy(exposition.decode())
    assert series(generate_latest(static)) == series(exposition), "baseline must hold the same series"

    ours, baseline = timings(live, args.scrapes), timings(static, args.scrapes)
    collector.close()

    def row(name: str, values: list[float]) -> str:
        p95 = statistics.quantiles(values, n=20)[18]
        return f"| {name:<38} | {series(exposition):>6} | {statistics.median(values):>9.3f} | {p95:>9.3f} |"

    print(f"GPU collector scrape, {args.gpus} GPUs (fake NVML), {args.scrapes} scrapes each")
    print("| registry                               | series | median ms |    p95 ms |")
    print("|----------------------------------------|--------|-----------|-----------|")
    print(row("fleetscope GpuCollector + self metrics", ours))
    print(row("prometheus-client static registry", baseline))
    print(f"ratio (median): {statistics.median(ours) / statistics.median(baseline):.1f}x")


if __name__ == "__main__":
    main()
