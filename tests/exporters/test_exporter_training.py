"""The training hook and collector: real CPU DDP (gloo) feeding a real exporter, records dropped when
the exporter is down, malformed datagrams, the rank bound."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetscope.exporters.training import PHASES, RECORD, TrainingCollector, TrainingHook
from tests.exporters.support import KERNEL_LOGS, running_exporter, samples, wait_for

REPO = Path(__file__).resolve().parents[2]


def scrape(collector: TrainingCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    return samples(generate_latest(registry).decode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (the training extra)")
def test_train_ddp_example_feeds_per_rank_metrics_to_the_exporter(tmp_path: Path) -> None:
    sock = tmp_path / "training.sock"
    (tmp_path / "kern.log").write_bytes((KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes())
    with running_exporter(tmp_path / "kern.log", training_socket=str(sock)) as exporter:
        wait_for(lambda: sock.is_socket())
        steps = 15
        command = [sys.executable, "-m", "fleetscope.examples.train_ddp", "--world-size", "3"]
        command += ["--steps", str(steps), "--socket", str(sock), "--port", str(free_port())]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"records sent {steps}, dropped 0" in result.stdout
        url = f"http://127.0.0.1:{exporter.port}/metrics"

        def all_steps_in() -> bool:
            body = urllib.request.urlopen(url, timeout=10).read().decode()
            found = samples(body)
            return all(found.get(("fleetscope_training_steps_total", (("rank", r),))) == steps for r in "012")

        wait_for(all_steps_in)
        found = samples(urllib.request.urlopen(url, timeout=10).read().decode())
    for rank in "012":
        label = (("rank", rank),)
        assert found[("fleetscope_training_step_duration_seconds_count", label)] == steps
        assert found[("fleetscope_training_samples_total", label)] == steps * 64
        assert found[("fleetscope_training_step", label)] == steps
        assert 0 < found[("fleetscope_training_loss", label)] < 10
        info = (("job_id", ""), ("local_rank", rank), ("rank", rank), ("world_size", "3"))
        assert found[("fleetscope_training_rank_info", info)] == 1
        for phase in ("forward", "backward", "optimizer", "collective_wait"):
            # every phase took time on every rank, the gradient all-reduce included (DDP comm hook)
            assert found[("fleetscope_training_phase_seconds_total", (("phase", phase), ("rank", rank)))] > 0


def test_an_exporter_stopped_with_sigterm_removes_its_training_socket(tmp_path: Path) -> None:
    """systemd, the kubelet and Slurm stop the exporter with SIGTERM: it closes its collectors, and the
    training socket file goes with it."""
    sock = tmp_path / "training.sock"
    (tmp_path / "kern.log").write_text("")
    command = [sys.executable, "-m", "fleetscope.console.cli", "exporter", "--web.listen-address",
               f"127.0.0.1:{free_port()}", "--no-collector.gpu", "--no-collector.nvlink",
               "--collector.xid.kernel-log", str(tmp_path / "kern.log"), "--collector.training.socket",
               str(sock)]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for(sock.is_socket)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()
    assert not sock.exists()


def test_with_the_exporter_down_records_are_dropped_and_counted(tmp_path: Path) -> None:
    hook = TrainingHook(str(tmp_path / "up.sock"), rank=0)
    for _ in range(3):
        with hook.step(samples=8) as step, step.phase("forward"):
            pass
    hook.flush()
    wait_for(lambda: hook.dropped == 3)
    assert hook.sent == 0
    collector = TrainingCollector(tmp_path / "up.sock").start()
    try:
        wait_for(lambda: collector.error is None)  # bound and receiving, not just the file made

        def one_arrives() -> bool:  # the hook retries the socket a second after a refused send
            hook.record(0.25, [0.0, 0.1, 0.1], samples=8, loss=1.5)
            return ("fleetscope_training_steps_total", (("rank", "0"),)) in scrape(collector)

        wait_for(one_arrives, interval=0.2)
        found = scrape(collector)
        # the hook's own drop count travels with the records that arrive
        assert found[("fleetscope_training_hook_dropped_records_total", (("rank", "0"),))] >= 3
        assert found[("fleetscope_training_loss", (("rank", "0"),))] == 1.5
    finally:
        collector.close()
        hook.close()


def test_malformed_records_and_ranks_past_the_limit_are_counted(tmp_path: Path) -> None:
    collector = TrainingCollector(tmp_path / "t.sock", max_ranks=2).start()
    wait_for(lambda: collector.error is None)
    collector.feed(b"garbage")
    good = RECORD.pack(b"FSTR", 1, 1, 0, 0, 4, 0.5, *[0.1] * len(PHASES), 8.0, 0.0, math.nan, 0)
    collector.feed(good)
    collector.feed(RECORD.pack(b"FSTR", 1, 1, 1, 1, 4, 0.5, *[0.1] * len(PHASES), 8.0, 0.0, math.nan, 0))
    collector.feed(RECORD.pack(b"FSTR", 1, 1, 2, 2, 4, 0.5, *[0.1] * len(PHASES), 8.0, 0.0, math.nan, 0))
    collector.feed(RECORD.pack(b"FSTR", 1, 1, 3, 3, 4, math.inf, *[0.1] * len(PHASES), 8.0, 0.0, math.nan, 0))
    found = scrape(collector)
    collector.close()
    assert found[("fleetscope_training_records_rejected_total", (("reason", "malformed"),))] == 2
    assert found[("fleetscope_training_records_rejected_total", (("reason", "too_many_ranks"),))] == 1
    assert {dict(k)["rank"] for n, k in found if n == "fleetscope_training_steps_total"} == {"0", "1"}


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is None,
    reason="needs opentelemetry-exporter-otlp-proto-http (the training extra)",
)
def test_steps_become_otlp_spans_when_an_endpoint_is_configured(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):  # a real OTLP/HTTP receiver on 127.0.0.1
        def do_POST(self) -> None:
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = TrainingHook(
            str(tmp_path / "no-exporter.sock"), rank=5, otlp_endpoint=f"http://127.0.0.1:{server.server_port}"
        )
        for _ in range(2):
            with hook.step(samples=4) as step:
                with step.phase("forward"):
                    pass
                with step.phase("backward"):
                    pass
        hook.close()  # flushes the batch span processor
    finally:
        server.shutdown()
    spans = []
    for path, body in received:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest.FromString(body)
        spans += [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    names = sorted(s.name for s in spans)
    assert names.count("training.step") == 2 and names.count("forward") == 2 and names.count("backward") == 2
    steps = {s.span_id for s in spans if s.name == "training.step"}
    assert all(s.parent_span_id in steps for s in spans if s.name != "training.step")


def test_the_hook_never_raises_into_training(tmp_path: Path) -> None:
    hook = TrainingHook(str(tmp_path / "none.sock"), rank=0)
    hook.record("not a number", samples=object())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="out of memory"), hook.step() as step, step.phase("forward"):
        raise RuntimeError("out of memory")  # the training code's own error passes; the step is recorded
    with hook.step() as step, step.phase("no such phase"):
        pass
    hook.flush()
    wait_for(lambda: hook.dropped == 3)
    hook.close()
