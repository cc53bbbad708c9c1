"""How long the console's Incident and Cluster pages take to render for a large cluster.

Run: ``python -m benchmarks.bench_console --nodes 16 --nodes 2048`` (``--repeats``).

For each size, a simulated cluster is served on 127.0.0.1 as a Prometheus HTTP API (``/api/v1/query``,
the instant-query shape Prometheus documents) answering the console's :class:`PromQLSource` with every
node's series: 8 GPUs (temperature, up, lost, recovery action, the five throttle reasons, Xid counts,
uncorrectable remapped rows), InfiniBand error counters and 8 training ranks of one job. A few nodes
are unwell (a lost GPU, Xids, throttling, link errors, a slow rank). The incident store holds the
engine's own report on an example bundle whose culprit is ``node-02``.

Each page is rendered by Streamlit's ``AppTest`` (the script run, charts and tables built and
serialised, as for a browser): first **cold**, the console's first look at the cluster (two queries,
every series parsed) read while the page waits, then **warm**, ``--repeats`` times with a look in hand,
which is what every later visit costs: the console reads newer looks in the background, in a process
of its own (:class:`fleetscope.console.cluster_state.Sampler`). The table gives the median seconds and
the ratio to the smallest size. **cluster while reading** renders the page with a look that is always
stale, so a background read runs during every render and competes with it for the cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fleetscope.collectors import investigate
from fleetscope.collectors.incidents import IncidentStore
from fleetscope.console.cluster_state import THROTTLE_REASONS

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "fleetscope" / "console" / "app.py"
BUNDLE = ROOT / "fleetscope" / "examples" / "incidents" / "50-multinode-xid119-gsp-timeout-collective-hang"
GPUS = 8
RANKS_PER_NODE = 8


def node_name(index: int) -> str:
    return f"node-{index:02d}"


def cluster_series(nodes: int, then: bool, seed: int = 7) -> list[dict[str, Any]]:
    """The instant-query result vector of a simulated cluster: now, or ``then`` (the window's start)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []

    def add(instance: str, name: str, value: float, **labels: str) -> None:
        out.append({"metric": {"__name__": name, "instance": instance, "job": "fleetscope", **labels},
                    "value": [time.time(), str(value)]})  # fmt: skip

    for n in range(1, nodes + 1):
        instance = f"{node_name(n)}:9847"
        unwell = n % 97 == 2  # node-02 and every 97th node after it
        for gpu in range(GPUS):
            g = str(gpu)
            lost = unwell and gpu == 3
            add(instance, "fleetscope_gpu_temperature_celsius", 30 + rng.random() * 45, gpu=g)
            add(instance, "fleetscope_gpu_up", 0.0 if lost else 1.0, gpu=g)
            add(instance, "fleetscope_gpu_lost", 1.0 if lost else 0.0, gpu=g)
            add(instance, "fleetscope_gpu_recovery_action", 0.0, gpu=g)
            for reason in THROTTLE_REASONS:
                active = unwell and gpu == 5 and reason == "hw_thermal_slowdown"
                add(instance, "fleetscope_gpu_clock_event_reason_active", float(active), gpu=g, reason=reason)
            add(
                instance,
                "fleetscope_gpu_xid_errors_total",
                0 if then else (3 if lost else 0),
                gpu=g,
                xid="119",
            )
            add(instance, "fleetscope_gpu_remapped_rows_uncorrectable_total", 0.0, gpu=g)
        for port in ("1", "2"):
            errors = 0 if then or not unwell else 40
            add(instance, "fleetscope_infiniband_symbol_errors_total", errors, device="mlx5_0", port=port)
        for local in range(RANKS_PER_NODE):
            rank = str((n - 1) * RANKS_PER_NODE + local)
            seconds = 1.0 + rng.random() * 0.05 + (1.5 if unwell and local == 0 else 0.0)
            steps = 100 if then else 160
            add(instance, "fleetscope_training_step_duration_seconds_sum", steps * seconds, rank=rank)
            add(instance, "fleetscope_training_step_duration_seconds_count", steps, rank=rank)
            add(instance, "fleetscope_training_steps_total", steps, rank=rank)
            wait = steps * (seconds - 0.6)
            add(instance, "fleetscope_training_phase_seconds_total", wait, rank=rank, phase="collective_wait")
            add(instance, "fleetscope_training_rank_info", 1.0, rank=rank, job_id="llm-pretrain",
                local_rank=str(local), world_size=str(nodes * RANKS_PER_NODE))  # fmt: skip
    return out


def _serve(nodes: int, ports: Any) -> None:
    """Serve the simulated cluster as a Prometheus instant-query API on 127.0.0.1 until killed; the port
    goes to ``ports`` (a queue)."""
    answers = {
        then: json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": cluster_series(nodes, then)}}
        ).encode()
        for then in (False, True)
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query).get("query", [""])[0]
            body = answers["offset" in query] if parts.path == "/api/v1/query" else b"{}"
            self.send_response(200 if parts.path == "/api/v1/query" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ports.put(server.server_address[1])
    server.serve_forever()


@contextmanager
def prometheus_api(nodes: int) -> Iterator[str]:
    """The simulated cluster's API in a process of its own, as a real Prometheus would be (in this
    process its answers would compete with the renders for the interpreter); yields its URL."""
    # By its module's name: AppTest runs page scripts as __main__, so a function of __main__ (this file,
    # under `python -m`) cannot be found by name once a page has run.
    from benchmarks import bench_console

    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=bench_console._serve, args=(nodes, ports), daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=300)}"
    finally:
        server.terminate()
        server.join()


def render(page: str, query: dict[str, str] | None = None) -> float:
    """Seconds one AppTest run of a page takes.

    Raises:
        RuntimeError: the page raised.
    """
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(APP), default_timeout=600)
    app.switch_page(page)
    for key, value in (query or {}).items():
        app.query_params[key] = value
    started = time.perf_counter()
    app.run()
    seconds = time.perf_counter() - started
    if app.exception:
        raise RuntimeError(f"{page}: {app.exception[0].message}")
    return seconds


def measure(nodes: int, repeats: int, workdir: Path) -> dict[str, float]:
    store_path = workdir / f"incidents-{nodes}.db"
    store = IncidentStore(store_path)
    change = store.record(investigate(BUNDLE).to_dict())
    store.close()
    assert change is not None
    fingerprint = change.incident.fingerprint
    with prometheus_api(nodes) as url:
        os.environ.update(
            {
                "FLEETSCOPE_INCIDENT_STORE": str(store_path),
                "FLEETSCOPE_CONSOLE_PROMETHEUS_URL": url,
                "FLEETSCOPE_CONSOLE_REFRESH_SECONDS": "3600",
                "FLEETSCOPE_LINEAGE_URI": f"embedded://{workdir / 'no-lineage'}",  # none: not measured here
            }
        )
        results = {"cluster cold": render("views/cluster.py")}
        results["cluster warm"] = statistics.median(render("views/cluster.py") for _ in range(repeats))
        results["incident warm"] = statistics.median(
            render("views/incident.py", {"incident": fingerprint}) for _ in range(repeats)
        )
        # A look that is always stale: every render starts (or finds) a read in the background, which
        # competes with the page for the cores.
        os.environ["FLEETSCOPE_CONSOLE_REFRESH_SECONDS"] = "0"
        render("views/cluster.py")  # this sampler's first look
        results["cluster while reading"] = statistics.median(
            render("views/cluster.py") for _ in range(repeats)
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, action="append", help="cluster size (repeatable)")
    parser.add_argument("--repeats", type=int, default=5, help="warm renders per page")
    args = parser.parse_args(argv)
    sizes = sorted(args.nodes or [16, 2048])
    with tempfile.TemporaryDirectory(prefix="fleetscope-bench-console-") as scratch:
        rows = {nodes: measure(nodes, args.repeats, Path(scratch)) for nodes in sizes}
    smallest = rows[sizes[0]]
    print(f"| nodes | GPUs | {' | '.join(rows[sizes[0]])} |")
    print(f"|---:|---:|{'---:|' * len(smallest)}")
    for nodes, result in rows.items():
        cells = [f"{s:.2f} s ({s / smallest[k]:.1f}x)" for k, s in result.items()]
        print(f"| {nodes:,} | {nodes * GPUS:,} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
