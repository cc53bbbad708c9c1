"""The live collector against a real exporter over HTTP, directly and through a real Prometheus."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetscope.collectors.incidents import IncidentStore
from fleetscope.collectors.live import (
    CollectionError,
    ExporterSource,
    LiveCollector,
    PromQLSource,
    SourceError,
    http_url,
)
from fleetscope.exporters.server import Exporter
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_X8, KERNEL_LOGS, running_exporter, wait_for
from tests.servers import free_port, prometheus_server, promql


@pytest.fixture
def kernel_log(tmp_path: Path) -> Path:
    log = tmp_path / "kern.log"
    log.write_text("")
    return log


@pytest.fixture
def exporter(kernel_log: Path) -> Iterator[Exporter]:
    with running_exporter(kernel_log) as running:
        yield running


def _events(exporter: Exporter) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/events", timeout=5) as answer:
        events: list[dict] = json.loads(answer.read())["events"]
        return events


def test_a_gpu_falling_off_the_bus_becomes_one_incident(
    tmp_path: Path, exporter: Exporter, kernel_log: Path
) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    collector = LiveCollector([ExporterSource([f"127.0.0.1:{exporter.port}"])], store, tmp_path / "window")
    assert collector.run_once()["incident"] is False

    fallen = (KERNEL_LOGS / "fallen-off-bus-multiline.dmesg.log").read_text()
    kernel_log.write_text(fallen)
    wait_for(lambda: len(_events(exporter)) == len(fallen.splitlines()))
    report = collector.run_once()
    top = report["root_causes"][0]
    assert report["incident"] is True
    assert (top["layer"], top["node"]) == ("gpu_hardware", "127.0.0.1")
    assert "b3:00" in (top["gpu_pci_bus_id"] or "")

    collector.run_once()  # the exporter's ring buffer repeats the lines; the window must not
    window_log = (tmp_path / "window" / "127.0.0.1" / "kernel.log").read_text().splitlines()
    assert window_log == fallen.splitlines()  # each line once, with its own stamp only
    (incident,) = store.recent()
    assert incident.occurrences == 2
    exposition = collector.registry.get_sample_value("fleetscope_collector_cycles_total")
    assert exposition == 3


def test_a_cycle_with_no_source_read_is_an_error_not_a_healthy_report(tmp_path: Path) -> None:
    dead = ExporterSource([f"127.0.0.1:{free_port()}"], timeout=2)
    collector = LiveCollector([dead], IncidentStore(tmp_path / "incidents.db"), tmp_path / "window")
    with pytest.raises(CollectionError, match="no source could be read"):
        collector.run_once()
    assert collector.registry.get_sample_value("fleetscope_collector_source_errors_total") == 1


def test_a_dead_exporter_among_live_ones_is_named_in_the_report(tmp_path: Path, exporter: Exporter) -> None:
    dead_port = free_port()
    source = ExporterSource([f"127.0.0.1:{exporter.port}", f"127.0.0.1:{dead_port}"], timeout=2)
    report = LiveCollector([source], IncidentStore(tmp_path / "incidents.db"), tmp_path / "window").run_once()
    assert report["incident"] is False
    (note,) = [n for n in report["notes"] if n.startswith("not read this cycle")]
    assert f"http://127.0.0.1:{dead_port}/metrics" in note


def test_the_collector_only_replaces_its_own_window(tmp_path: Path, exporter: Exporter) -> None:
    foreign = tmp_path / "window"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    source = ExporterSource([f"127.0.0.1:{exporter.port}"])
    collector = LiveCollector([source], IncidentStore(tmp_path / "incidents.db"), foreign)
    with pytest.raises(CollectionError, match="not a fleetscope window"):
        collector.run_once()
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("address", ["bad target!!", "ftp://host:21", "host:port", "http://:9847"])
def test_addresses_are_checked_before_any_request(address: str) -> None:
    with pytest.raises(ValueError, match=r"not an HTTP address|port"):
        http_url(address)


def test_addresses_without_scheme_are_http() -> None:
    assert http_url("node-01:9847") == "http://node-01:9847"
    assert http_url("https://prom.example:443/") == "https://prom.example:443"


def test_an_unreachable_exporter_is_a_source_error() -> None:
    with pytest.raises(SourceError, match=r"GET http://127\.0\.0\.1"):
        ExporterSource([f"127.0.0.1:{free_port()}"], timeout=2).fetch()


@pytest.mark.integration
def test_xid_counters_read_through_prometheus_name_the_gpu(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_bytes((KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes())
    collector = LiveCollector([], IncidentStore(tmp_path / "incidents.db"), tmp_path / "window")
    with (
        running_exporter(log, FakeNvml.from_capture(H100_X8)) as exporter,
        prometheus_server(tmp_path, [f"127.0.0.1:{exporter.port}"]) as base,
    ):
        wait_for(lambda: bool(promql(base, "fleetscope_gpu_xid_errors_total")), timeout=60, interval=0.5)
        collector.sources = [PromQLSource(base)]
        report = collector.run_once()
    top = report["root_causes"][0]
    assert report["incident"] is True
    assert (top["node"], top["gpu_pci_bus_id"]) == ("127.0.0.1", "0000:0a:00.0")
