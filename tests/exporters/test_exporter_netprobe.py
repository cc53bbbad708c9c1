"""The network probe on a two-process run: two exporters on 127.0.0.1 probe each other."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fleetscope.exporters.netprobe import NetworkProbeCollector, parse_peer
from tests.exporters.support import running_exporter, samples, wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def exporter_process(tmp_path: Path, port: int, probe_port: int, peer: str, provider: str, fabric_port: int
                     ) -> Iterator[str]:  # fmt: skip
    """A second exporter, in its own process, started through the command line."""
    command = [sys.executable, "-m", "fleetscope.console.cli", "exporter", "--web.listen-address",
               f"127.0.0.1:{port}", "--collector.netprobe", "--collector.netprobe.peers", peer,
               "--collector.netprobe.listen-address", f"127.0.0.1:{probe_port}",
               "--collector.netprobe.interval", "0.2", "--collector.netprobe.provider", provider,
               "--collector.netprobe.fabric-port", str(fabric_port), "--no-collector.gpu",
               "--no-collector.nvlink", "--collector.xid.kernel-log", str(tmp_path / "none.log"),
               "--collector.training.socket", str(tmp_path / "other.sock")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        process.terminate()
        process.wait(10)


def histogram_count(url: str, peer: str, transport: str) -> float:
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError:
        return 0
    key = ("fleetscope_network_probe_rtt_seconds_count", (("peer", peer), ("transport", transport)))
    return samples(body).get(key, 0)


def two_process_run(tmp_path: Path, provider: str) -> tuple[float, float]:
    a_probe, b_probe, fabric = free_port(), free_port(), free_port()
    (tmp_path / "kern.log").write_bytes(b"")
    with exporter_process(tmp_path, free_port(), a_probe, f"127.0.0.1:{b_probe}", provider, fabric) as a_url:
        settings = {
            "collector_netprobe": True,
            "netprobe_peers": f"127.0.0.1:{a_probe}",
            "netprobe_listen_address": f"127.0.0.1:{b_probe}",
            "netprobe_interval_seconds": 0.2,
            "netprobe_provider": provider,
            "netprobe_fabric_port": fabric,
        }
        with running_exporter(tmp_path / "kern.log", **settings) as b:
            b_url = f"http://127.0.0.1:{b.port}/metrics"
            transport = provider or "tcp"
            wait_for(lambda: histogram_count(b_url, f"127.0.0.1:{a_probe}", transport) > 0, timeout=60)
            wait_for(lambda: histogram_count(a_url, f"127.0.0.1:{b_probe}", "tcp") > 0, timeout=60)
            return (
                histogram_count(b_url, f"127.0.0.1:{a_probe}", transport),
                histogram_count(a_url, f"127.0.0.1:{b_probe}", "tcp"),
            )


def test_two_exporters_probe_each_other_over_tcp(tmp_path: Path) -> None:
    b_saw, a_saw = two_process_run(tmp_path, provider="")
    assert b_saw >= 10 and a_saw >= 10  # ten round trips per probe round


@pytest.mark.skipif(shutil.which("fi_pingpong") is None, reason="fi_pingpong not installed (libfabric-bin)")
def test_fi_pingpong_probes_with_the_libfabric_tcp_provider(tmp_path: Path) -> None:
    # The in-test exporter probes the other process's fi_pingpong server (libfabric's tcp provider on
    # loopback); the other process's own probe falls back to TCP when no fi_pingpong server answers it.
    b_saw, _ = two_process_run(tmp_path, provider="tcp")
    assert b_saw >= 1


def test_peer_addresses() -> None:
    assert parse_peer("node-7", 9848) == ("node-7", 9848)
    assert parse_peer("10.0.0.7:9000", 9848) == ("10.0.0.7", 9000)
    assert parse_peer("[fd00::7]:9000", 9848) == ("fd00::7", 9000)
    with pytest.raises(ValueError, match="HOST:PORT"):
        NetworkProbeCollector(["node:port"])
