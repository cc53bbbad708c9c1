"""``fleetscope up``: exporter, collector and console as real processes, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.exporters.support import wait_for
from tests.servers import free_port


def _up(tmp_path: Path, *ports: int, more: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    exporter, collector, console = ports
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetscope.console.cli",
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--exporter-port",
            str(exporter),
            "--collector-port",
            str(collector),
            "--console-port",
            str(console),
            "--interval",
            "1",
            *more,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def _gauge(url: str, name: str) -> float:
    for family in text_string_to_metric_families(_get(url)):
        if family.name == name:
            return float(family.samples[0].value)
    return 0.0


def _cycles(url: str) -> float:
    return _gauge(url, "fleetscope_collector_cycles")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
def test_the_stack_comes_up_collects_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    ports = (free_port(), free_port(), free_port())
    up = _up(tmp_path, *ports)
    try:
        assert up.stdout is not None
        lines = [up.stdout.readline() for _ in range(4)]
        assert lines[0] == f"exporter   http://127.0.0.1:{ports[0]}/metrics\n"
        assert lines[1].startswith(f"collector  http://127.0.0.1:{ports[1]}/metrics (incidents in ")
        assert lines[2] == f"console    http://127.0.0.1:{ports[2]}\n"
        assert lines[3] == "fleetscope is up; Ctrl-C stops it.\n"
        assert "fleetscope_scrape_collector_success" in _get(f"http://127.0.0.1:{ports[0]}/metrics")
        # The collector scrapes the exporter: its cycles count up.
        wait_for(lambda: _cycles(f"http://127.0.0.1:{ports[1]}/metrics") >= 2, timeout=30)
        assert _get(f"http://127.0.0.1:{ports[2]}/_stcore/health") == "ok"
    finally:
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    assert out.endswith("stopping ...\nstopped.\n")
    assert not any(_listening(port) for port in ports)
    assert (tmp_path / "data" / "incidents.db").is_file()


@pytest.mark.integration
def test_a_service_that_cannot_start_stops_the_stack_and_says_why(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        collector_port = free_port()
        up = _up(tmp_path, busy.getsockname()[1], collector_port, free_port())
        out, err = up.communicate(timeout=120)
    assert up.returncode == 1
    assert out == ""
    assert err.startswith("fleetscope up: exporter exited with status 1 while starting; the end of its log")
    assert "cannot listen on" in err
    assert not _listening(collector_port)


@pytest.mark.integration
def test_a_port_something_else_answers_on_is_refused_before_anything_starts(tmp_path: Path) -> None:
    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        port = other.server_address[1]
        up = _up(tmp_path, port, free_port(), free_port())
        out, err = up.communicate(timeout=60)
    finally:
        other.shutdown()
        other.server_close()
    assert (up.returncode, out) == (1, "")
    url = f"http://127.0.0.1:{port}/metrics"
    assert err == f"fleetscope up: exporter: {url} already answers; is another one running?\n"


@pytest.mark.integration
def test_the_stack_also_watches_a_targets_file_such_as_a_simulated_cluster(tmp_path: Path) -> None:
    targets = tmp_path / "sim.json"
    simulate = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetscope.console.cli",
            *("simulate", "--nodes", "2", "--file-sd", str(targets)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ports = (free_port(), free_port(), free_port())
    try:
        wait_for(targets.exists, timeout=60)
        up = _up(tmp_path, *ports, more=("--no-console", "--targets-file", str(targets)))
        try:
            assert up.stdout is not None
            assert any(line.startswith("fleetscope is up") for line in up.stdout)  # False at its end
            # This node's exporter and the two simulated ones answer every cycle.
            nodes = f"http://127.0.0.1:{ports[1]}/metrics"
            wait_for(lambda: _gauge(nodes, "fleetscope_collector_nodes") == 3, timeout=60)
        finally:
            up.send_signal(signal.SIGINT)
            _, err = up.communicate(timeout=60)
        assert up.returncode == 0, err
    finally:
        simulate.terminate()
        simulate.wait(timeout=30)


def test_a_missing_targets_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = ("--targets-file", str(tmp_path / "no.json"))
    up = _up(tmp_path, free_port(), free_port(), free_port(), more=missing)
    out, err = up.communicate(timeout=60)
    assert (up.returncode, out) == (2, "")
    assert err == f"fleetscope up: error: no targets file at {tmp_path / 'no.json'}\n"
