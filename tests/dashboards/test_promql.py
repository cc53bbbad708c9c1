"""Every PromQL expression of every dashboard and rule file, run against a real Prometheus.

Prometheus (Debian's package) scrapes two exporter processes on 127.0.0.1 (tests/dashboards/node.py: an
H100 x8 node with the fixture sysfs's InfiniBand and EFA ports and job mappings, and an H200 node without
InfiniBand, both on the fake NVML), a ``fleetscope collect`` process reading them, and one exporter
address where nothing listens; it loads the alerting and recording rules. Four training ranks of one job
send steps to the two exporters through the real training hook (rank 3 slow); faults happen the way
hardware shows them: Xid lines appended to a kernel log, a GPU off the bus, a hung GPU, rising ECC,
PCIe-replay and NVLink error counters, thermal slowdown, row remapping pending and failed. Every
expression, with the dashboard's variables set to what their own queries return (every value, as
Grafana's "All"), must return data, and the panels must show those faults.

Prometheus also scrapes one node of ``fleetscope simulate`` (fleetscope/simulate/cluster.py, served by its
exporter endpoints), as the only source of three series no fake-NVML capture records: the NVLink
throughput counters ``fleetscope_nvlink_transmit_bytes_total`` and ``..._receive_bytes_total`` (no capture
holds the ``NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/RX`` field values) and the peer-to-peer probe's
``fleetscope_nvlink_probe_latency_seconds`` histogram (the probe needs two CUDA GPUs). The interconnect
dashboard's "NVLink throughput" and "NVLink probe latency" panels therefore read simulated series, shaped
by the exporter's own metric definitions; every other expression has data from the real exporters too.
The simulated node's job (``sim-4242``) sorts after the training dashboard's job, which the board shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetscope.dashboards import GRAFANA_DIR
from fleetscope.exporters.training import TrainingHook
from fleetscope.simulate import ExporterEndpoints, SimulatedCluster
from tests.exporters.support import FIXTURES, H100_X8, H200, KERNEL_LOGS, wait_for
from tests.servers import free_port, prometheus_server, promql

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "fleetscope" / "dashboards" / "rules").glob("*.yml"))
#: Grafana's $__rate_interval with a 1 s scrape interval is at least four scrapes; a minute is safe.
RATE_INTERVAL = "1m"
JOB = "4242"  # as in tests/fixtures/jobs/4242.json


@dataclass(frozen=True)
class Expression:
    """One PromQL expression, where it is written, and the dashboard whose variables it uses."""

    where: str
    expr: str
    board: str | None = None


def _dashboard_expressions() -> list[Expression]:
    found = []
    for path in sorted(GRAFANA_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        uid = board["uid"]
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                found.append(
                    Expression(f"{uid} variable {variable['name']}", variable["query"]["query"], uid)
                )
        for annotation in board["annotations"]["list"]:
            if "expr" in annotation:
                found.append(Expression(f"{uid} annotation {annotation['name']}", annotation["expr"], uid))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append(Expression(f"{uid} {panel['title']!r} {target['refId']}", target["expr"], uid))
    return found


def _rule_expressions() -> list[Expression]:
    return [
        Expression(f"{path.name} {rule.get('alert') or rule.get('record')}", rule["expr"])
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


EXPRESSIONS = _dashboard_expressions() + _rule_expressions()
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def query(base: str, expr: str) -> list[dict[str, Any]]:
    """An instant query; a PromQL error fails the test (``promql`` would read it as no data)."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        pytest.fail(f"Prometheus refused {expr!r}: {exc.read().decode(errors='replace')}")
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


class Variables:
    """A dashboard's variables as Grafana sets them: each query variable's values from Prometheus."""

    def __init__(self, base: str) -> None:
        self.base = base

    def values(self, expr: str, chosen: dict[str, str]) -> list[str]:
        """What ``label_values(SELECTOR, LABEL)`` offers, with the variables chosen so far filled in."""
        match = _LABEL_VALUES.match(expr)
        assert match, f"not a label_values() query: {expr}"
        selector = substitute(match["selector"], chosen)
        url = f"{self.base}/api/v1/series?{urllib.parse.urlencode({'match[]': selector})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            series = json.loads(response.read())["data"]
        return sorted({s[match["label"]] for s in series if match["label"] in s})

    def for_board(self, uid: str) -> dict[str, str] | None:
        """Each variable of dashboard ``uid`` set to all its values (multi) or its first (single);
        None while a variable has no value yet."""
        board = json.loads((GRAFANA_DIR / f"{uid}.json").read_text())
        chosen: dict[str, str] = {}
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            values = self.values(variable["query"]["query"], chosen)
            if not values:
                return None
            if variable.get("includeAll"):
                # Grafana's "All": a regex of every value, escaped for a PromQL string literal.
                chosen[variable["name"]] = (
                    "(" + "|".join(re.escape(v).replace("\\", "\\\\") for v in values) + ")"
                )
            else:
                chosen[variable["name"]] = values[0]
        return chosen


def substitute(expr: str, chosen: dict[str, str]) -> str:
    """Replace ``$name`` and ``$__rate_interval`` the way Grafana interpolates a Prometheus query."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name, value in sorted(chosen.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr.replace("$labels", "").replace("$value", ""), f"variable left in {expr}"
    return expr


# ---------------------------------------------------------------------------------------- the stack


def _sysfs(tmp: Path) -> Path:
    """The fixture sysfs (host network counters) with InfiniBand and EFA ports from real trees."""
    tree = tmp / "sys"
    shutil.copytree(FIXTURES / "sysfs", tree, symlinks=True)
    for source in ("procfs", "efa_awsdocs"):
        for device in (FIXTURES / "infiniband" / source / "class" / "infiniband").iterdir():
            shutil.copytree(device, tree / "class" / "infiniband" / device.name, symlinks=True)
    return tree


def _xid_line(bus: str, xid: int, uptime: float) -> str:
    """A kernel-log Xid line in the driver's shape (as in tests/fixtures/kernel-log)."""
    return f"[{uptime:.6f}] NVRM: Xid (PCI:{bus}): {xid}, pid='<unknown>', name=<unknown>, Ch 00000008\n"


class Ranks(threading.Thread):
    """Four training ranks of one synchronous job sending steps through the real training hook (rank 3
    computes four times as long; the others wait for it at the collective), and the kernel log of node A
    gaining Xid lines: 79 on GPU 0 and an application Xid 31 on GPU 1, twice."""

    def __init__(self, sockets: tuple[Path, Path], log: Path) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.stop = threading.Event()
        self.hooks = [
            TrainingHook(str(sockets[rank // 2]), rank=rank, local_rank=rank % 2, world_size=4, job_id=JOB)
            for rank in range(4)
        ]

    def run(self) -> None:
        tick = 0
        while not self.stop.is_set():
            tick += 1
            # A synchronous job: every rank computes, then waits at the all-reduce for the slowest one.
            compute = [0.024 if rank == 3 else 0.006 for rank in range(4)]  # rank 3 is the straggler
            for rank, hook in enumerate(self.hooks):
                with hook.step(samples=32, tokens=4096) as step:
                    for phase in ("forward", "backward", "optimizer"):
                        with step.phase(phase):
                            time.sleep(compute[rank] / 3)
                    with step.phase("collective_wait"):
                        time.sleep(max(compute) - compute[rank])
                    step.loss = 2.0 / tick
            if tick in (10, 30):
                with self.log.open("a") as log:
                    log.write(_xid_line("0000:18:00", 79, 20000.0 + tick))
                    log.write(_xid_line("0000:2a:00", 31, 20000.5 + tick))
            time.sleep(0.2)
        for hook in self.hooks:
            hook.close()


@contextmanager
def node(spec: dict[str, Any], log: Path) -> Iterator[int]:
    """A simulated node (tests/dashboards/node.py) in its own process; yields its exporter's port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.dashboards.node", json.dumps(spec)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("wb"))
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"the node did not start: {log.read_text()[-2000:]}"
        yield int(line)
    finally:
        process.terminate()
        process.wait(30)


#: Data arrives over the first minute or two (the recording rules run every 30 s, the Xid lines come after
#: a few seconds, the collector needs two cycles): each expression waits for it up to this long after the
#: stack started.
SETTLE_SECONDS = 150.0


@dataclass
class Stack:
    """The running stack: Prometheus's base URL and the time (monotonic clock) after which an expression
    without data fails."""

    prometheus: str
    deadline: float


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    sysfs = _sysfs(tmp)
    logs = [tmp / "a-kern.log", tmp / "b-kern.log"]
    logs[0].write_bytes((KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes())
    logs[1].write_bytes((KERNEL_LOGS / "xid45-nvlink.journal.log").read_bytes())
    sockets = (tmp / "a-training.sock", tmp / "b-training.sock")
    probe_b = free_port()
    node_a = {
        "capture": H100_X8.name,
        "kernel_log": str(logs[0]),
        "settings": {
            "path_sysfs": str(sysfs),
            "gpu_timeout_seconds": 1.0,
            "training_socket": str(sockets[0]),
            "jobs_mapping_dir": str(FIXTURES / "jobs"),
            "collector_netprobe": True,
            "netprobe_peers": f"127.0.0.1:{probe_b}",
            "netprobe_listen_address": f"127.0.0.1:{free_port()}",
            "netprobe_interval_seconds": 0.5,
            "netprobe_provider": "",
        },
        "faults": {
            "thermal": [1],
            "ecc_rising": [2],
            "replays_rising": [3],
            "remap_pending": [4],
            "remap_failed": [5],
            "hung": [6],
            "lost": [7],
        },
    }
    node_b = {
        "capture": H200.name,
        "kernel_log": str(logs[1]),
        # no InfiniBand on this node: its infiniband collector reports success 0 (an alert's data)
        "settings": {
            "gpu_timeout_seconds": 1.0,
            "training_socket": str(sockets[1]),
            "collector_netprobe": True,
            "netprobe_listen_address": f"127.0.0.1:{probe_b}",
            "netprobe_provider": "",
        },
        "faults": {"nvlink_rising": [0]},
    }
    ranks = Ranks(sockets, logs[0])
    collector: subprocess.Popen[bytes] | None = None
    simulation = ExporterEndpoints(SimulatedCluster(1)).start()
    try:
        with node(node_a, tmp / "a.log") as a_port, node(node_b, tmp / "b.log") as b_port:
            collector_port = free_port()
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            collector = subprocess.Popen(
                [
                    *(sys.executable, "-m", "fleetscope.console.cli", "collect"),
                    *("-t", f"node-a=127.0.0.1:{a_port}", "-t", f"node-b=127.0.0.1:{b_port}"),
                    *("--store", str(tmp / "incidents.db"), "--interval", "2", "--window", "120"),
                    *("--web.listen-address", f"127.0.0.1:{collector_port}"),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "collector.log").open("wb"),
            )
            wait_for(lambda: all(s.is_socket() for s in sockets), timeout=30)
            ranks.start()
            (simulated,) = simulation.targets().values()
            exporters = [f"127.0.0.1:{a_port}", f"127.0.0.1:{b_port}", f"127.0.0.1:{free_port()}", simulated]
            with prometheus_server(
                tmp,
                exporters,
                more_jobs={"fleetscope-collector": [f"127.0.0.1:{collector_port}"]},
                rule_files=RULES,
            ) as base:
                wait_for(lambda: bool(promql(base, "up")), timeout=60)  # Prometheus answers
                yield Stack(base, time.monotonic() + SETTLE_SECONDS)
    finally:
        simulation.stop()
        ranks.stop.set()
        ranks.join(10)
        if collector is not None:
            collector.terminate()
            collector.wait(30)


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=[e.where for e in EXPRESSIONS])
def test_expression_returns_data(stack: Stack, expression: Expression) -> None:
    variables = Variables(stack.prometheus)
    chosen: dict[str, str] | None = {}
    while True:
        chosen = variables.for_board(expression.board) if expression.board else {}
        if chosen is None:
            pass  # a variable this expression may use has no value yet
        elif _LABEL_VALUES.match(expression.expr):
            if variables.values(expression.expr, chosen):
                return
        elif query(stack.prometheus, substitute(expression.expr, chosen)):
            return
        if time.monotonic() > stack.deadline:
            break
        time.sleep(1)
    pytest.fail(f"{expression.where}: no data for {expression.expr} (variables {chosen})")


def _panel(stack: Stack, uid: str, title: str, ref: str = "A") -> list[dict[str, Any]]:
    """What a panel's query returns now, with the dashboard's variables on "All"."""
    board = json.loads((GRAFANA_DIR / f"{uid}.json").read_text())
    [target] = [t for p in board["panels"] if p["title"] == title for t in p["targets"] if t["refId"] == ref]
    chosen = Variables(stack.prometheus).for_board(uid)
    assert chosen is not None, f"{uid}: a variable has no value"
    return query(stack.prometheus, substitute(target["expr"], chosen))


def test_the_panels_show_the_faults(stack: Stack) -> None:
    """What an on-call engineer reads on the panels, for the faults the stack was given."""

    def settled() -> bool:
        straggler = _panel(stack, "fleetscope-training", "Stragglers: compute time over the job's median")
        xids = _panel(stack, "fleetscope-gpu", "Xid errors")
        return len(straggler) == 4 and any(r["metric"]["xid"] == "79" for r in xids)

    wait_for(settled, timeout=max(1.0, stack.deadline - time.monotonic()), interval=1)
    straggler = _panel(stack, "fleetscope-training", "Stragglers: compute time over the job's median")
    worst = max(straggler, key=lambda r: float(r["value"][1]))
    assert worst["metric"]["rank"] == "3" and float(worst["value"][1]) > 1.0  # over twice the median
    waits = {
        r["metric"]["rank"]: float(r["value"][1])
        for r in _panel(stack, "fleetscope-training", "Collective wait per rank")
    }
    assert min(waits, key=waits.__getitem__) == "3" and sorted(waits) == ["0", "1", "2", "3"]
    steps = _panel(stack, "fleetscope-training", "Step time per rank")
    assert sorted(r["metric"]["rank"] for r in steps) == ["0", "1", "2", "3"]
    assert {r["metric"]["job_id"] for r in steps} == {JOB}
    xid79 = [r for r in _panel(stack, "fleetscope-gpu", "Xid errors") if r["metric"]["xid"] == "79"]
    assert [r["metric"]["gpu"] for r in xid79] == ["0"]
    gpu_state = _panel(stack, "fleetscope-gpu", "NVML answering, GPUs lost", "B")
    assert sorted(r["metric"]["gpu"] for r in gpu_state if r["value"][1] == "1") == ["7"]
    assert _panel(stack, "fleetscope-cluster", "GPUs lost")[0]["value"][1] == "1"
    assert _panel(stack, "fleetscope-cluster", "Exporters down")[0]["value"][1] == "1"
    incidents = _panel(stack, "fleetscope-incidents", "Open incidents")
    assert incidents and {r["metric"]["node"] for r in incidents} <= {"node-a", "node-b"}
    assert "node-a" in {r["metric"]["node"] for r in incidents}
    down_links = _panel(stack, "fleetscope-interconnect", "NVLink errors", "C")  # replays, H200 GPU 0
    assert [r["metric"]["gpu"] for r in down_links if float(r["value"][1]) > 0] == ["0"]


def test_the_nvlink_panels_show_the_simulated_node(stack: Stack) -> None:
    """The simulated node's NVLinks as the panels show them: each GPU moves 18 links x 5 GB/s each way, and
    every ordered pair of its 8 GPUs has a probe p90 near the simulated 16 us round trip."""

    def p90() -> list[float]:
        rows = _panel(stack, "fleetscope-interconnect", "GPU peer-to-peer latency (p90)")
        return [float(r["value"][1]) for r in rows]

    def bandwidth() -> list[float]:
        rows = [*_panel(stack, "fleetscope-interconnect", "NVLink bandwidth"),
                *_panel(stack, "fleetscope-interconnect", "NVLink bandwidth", "B")]  # fmt: skip
        return [float(r["value"][1]) for r in rows]

    # A rate over the panels' minute reads low until the node has been scraped for a minute, and the probe
    # counts a round every 30 s.
    def settled() -> bool:
        latencies, rates = p90(), bandwidth()
        return (
            len(latencies) == 56
            and all(1e-5 < seconds < 5e-5 for seconds in latencies)
            and len(rates) == 2 * 8
            and all(0.9 * 18 * 5e9 < rate < 1.1 * 18 * 5e9 for rate in rates)
        )

    wait_for(settled, timeout=max(90.0, stack.deadline - time.monotonic()), interval=2)
