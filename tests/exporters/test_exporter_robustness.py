"""Never hangs, never dies: a hung collector serves stale values, 100 concurrent scrapes, bounded memory
over 10,000 scrapes, and /metrics behind TLS and basic auth from an exporter-toolkit web config."""

from __future__ import annotations

import base64
import concurrent.futures
import gc
import shutil
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from fleetscope.exporters.scrape import ScrapeCollector, SourceUnavailable
from fleetscope.exporters.web import WebConfigError, load_web_config
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import FIXTURES, H200, KERNEL_LOGS, running_exporter, samples, wait_for


class Blocking:
    """A collector whose reads block while ``gate`` is closed (a hung sysfs or driver read)."""

    name = "blocking"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.reads = 0

    def collect(self) -> Iterator[Metric]:
        self.gate.wait()
        self.reads += 1
        family = GaugeMetricFamily("fleetscope_test_reads", "Reads so far.")
        family.add_metric([], float(self.reads))
        yield family


def test_a_hung_collector_serves_its_last_values_as_stale_and_recovers() -> None:
    blocking = Blocking()
    scrape = ScrapeCollector([blocking], timeout=0.2)
    registry = CollectorRegistry()
    registry.register(scrape)
    assert samples(generate_latest(registry).decode())[("fleetscope_test_reads", ())] == 1
    blocking.gate.clear()
    for _ in range(3):  # the first waits out the deadline, the next do not wait for the stuck read again
        result = samples(generate_latest(registry).decode())
        assert result[("fleetscope_test_reads", ())] == 1
        assert result[("fleetscope_scrape_collector_success", (("collector", "blocking"),))] == 0
    blocking.gate.set()
    wait_for(lambda: samples(generate_latest(registry).decode())[("fleetscope_test_reads", ())] == 3)
    result = samples(generate_latest(registry).decode())
    assert result[("fleetscope_scrape_collector_success", (("collector", "blocking"),))] == 1
    scrape.close()


class FromMemory:
    """A collector that answers from what its own thread gathered; its source went away."""

    name = "memory"
    from_memory = True

    def __init__(self) -> None:
        self.threads: list[str] = []

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.current_thread().name)
        family = GaugeMetricFamily("fleetscope_test_remembered", "Gathered before the source went away.")
        family.add_metric([], 7.0)
        yield family
        raise SourceUnavailable("the socket went away")


def test_a_collector_that_answers_from_memory_runs_on_the_scraping_thread() -> None:
    memory, blocking = FromMemory(), Blocking()
    scrape = ScrapeCollector([memory, blocking], timeout=0.2)
    registry = CollectorRegistry()
    registry.register(scrape)
    blocking.gate.clear()  # a hung neighbour does not hold it up or mark it stale
    try:
        for _ in range(2):
            result = samples(generate_latest(registry).decode())
            assert result[("fleetscope_test_remembered", ())] == 7  # what it yielded before failing
            assert result[("fleetscope_scrape_collector_success", (("collector", "memory"),))] == 0
    finally:
        blocking.gate.set()
        scrape.close()
    assert memory.threads == [threading.current_thread().name] * 2  # no hand-off to a worker


@pytest.fixture
def exporter_everything_on(tmp_path: Path) -> Iterator[object]:
    (tmp_path / "kern.log").write_bytes((KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes())
    sysfs = FIXTURES / "infiniband" / "procfs"
    with running_exporter(
        tmp_path / "kern.log", FakeNvml.from_capture(H200), path_sysfs=str(sysfs)
    ) as exporter:
        yield exporter


def test_100_concurrent_scrapes_are_all_served(exporter_everything_on: object) -> None:
    url = f"http://127.0.0.1:{exporter_everything_on.port}/metrics"  # type: ignore[attr-defined]

    def scrape(_: int) -> int:
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
            return response.status if b"fleetscope_infiniband_port_state" in body else -1

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(scrape, range(100)))
    assert statuses == [200] * 100


def test_memory_stays_bounded_over_10000_scrapes(exporter_everything_on: object) -> None:
    # Counts live objects, not time: after 1,000 warm-up scrapes, 9,000 more (all collectors on, through
    # the per-collector threads and the exposition) may not leave more than a few hundred objects behind.
    registry = exporter_everything_on.registry  # type: ignore[attr-defined]
    for _ in range(1000):
        generate_latest(registry)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(9000):
        generate_latest(registry)
    gc.collect()
    after = len(gc.get_objects())
    assert after - before < 500, f"{after - before} more live objects after 9,000 more scrapes"


@pytest.fixture
def web_config(tmp_path: Path) -> Path:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed (Debian package openssl)")
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=127.0.0.1"]
    command += ["-keyout", "server.key", "-out", "server.crt", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    return config


def test_tls_and_basic_auth_from_a_web_config_file(web_config: Path, tmp_path: Path) -> None:
    (tmp_path / "kern.log").write_bytes(b"")
    context = ssl.create_default_context(cafile=str(tmp_path / "server.crt"))
    with running_exporter(tmp_path / "kern.log", web_config_file=str(web_config)) as exporter:
        url = f"https://127.0.0.1:{exporter.port}/metrics"

        def get(user: str | None, password: str = "") -> int:
            request = urllib.request.Request(url)
            if user is not None:
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                request.add_header("Authorization", f"Basic {token}")
            try:
                with urllib.request.urlopen(request, timeout=10, context=context) as response:
                    assert b"fleetscope_host_load1" in response.read()
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert get(None) == 401
        assert get("prometheus", "wrong") == 401
        assert get("nobody", "s3cret") == 401
        assert get("prometheus", "s3cret") == 200
        assert get("prometheus", "s3cret") == 200  # the cached check
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP gets no answer
            urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=10)


def test_bad_web_config_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users:\n  prometheus: plaintext\n")
    with pytest.raises(WebConfigError, match="not a bcrypt hash"):
        load_web_config(bad)
    bad.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    with pytest.raises(WebConfigError, match="TLS"):
        load_web_config(bad)
