"""Run every benchmark and print its table: ``python -m benchmarks`` from the repository root.

``--quick`` runs smaller sizes (a 64 MB bundle, a 10k-node graph, 64 simulated nodes) for a first look;
the full run measures the sizes benchmarks/README.md reports (a 1 GB bundle, 100k-node graphs, 2,048
simulated nodes), whose 2,048-node parts alone take many minutes each on two cores. Each benchmark also
runs on its own with its own flags: ``python -m benchmarks.bench_investigate --help``.
"""

from __future__ import annotations

import argparse

from benchmarks import (
    bench_console,
    bench_detection,
    bench_detection_pass,
    bench_exporter,
    bench_investigate,
    bench_lineage,
    bench_lineage_durability,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a first look")
    quick = parser.parse_args().quick
    print("== investigate: throughput and peak memory")
    bench_investigate.main(["--mb", "64"] if quick else ["--mb", "1024"])
    print("\n== live detection: one pass over N nodes of 8 GPUs")
    bench_detection_pass.main(
        ["--nodes", "64", "--fetch-nodes", "64"]
        if quick
        else ["--nodes", "64", "--nodes", "512", "--nodes", "2048", "--fetch-nodes", "512"]
    )
    print("\n== exporter: scrape time against a static registry")
    bench_exporter.main([])
    print("\n== lineage: OpenLineage ingest and audit-query latency (embedded store)")
    bench_lineage.main(["--nodes", "10000"] if quick else ["--nodes", "10000", "--nodes", "100000"])
    print("\n== lineage: durable ingest (group commit) and cold start of the embedded store")
    bench_lineage_durability.main(["--events", "10000" if quick else "100000"])
    print("\n== console: Incident and Cluster pages rendered by AppTest")
    bench_console.main(["--nodes", "16", "--nodes", "256" if quick else "2048"])
    print("\n== detection on a simulated cluster: precision, recall, time to incident, cost at scale")
    if quick:
        bench_detection.main(["--nodes", "64", "--reps", "1", "--healthy-cycles", "8", "--no-cost"])
    else:
        # Quality at 64 nodes; at 2,048 only the cost (a quality run there takes hours on two cores).
        bench_detection.main(["--nodes", "64", "--until-found", "--no-cost"])
        bench_detection.main(["--nodes", "2048", "--no-quality", "--no-healthy"])


if __name__ == "__main__":
    main()
