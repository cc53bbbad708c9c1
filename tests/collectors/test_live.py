"""The live collector against a real exporter over HTTP, directly and through a real Prometheus."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetscope.collectors.incidents import IncidentStore
from fleetscope.collectors.investigate import investigate
from fleetscope.collectors.live import (
    PROMQL_SELECTOR,
    CollectionError,
    ExporterSource,
    FileSDSource,
    LiveCollector,
    PromQLSource,
    SourceError,
    exposition,
    http_url,
    is_counter_sample,
    target_nodes,
    window_families,
)
from fleetscope.exporters.server import Exporter
from fleetscope.simulate.cluster import SimulatedCluster
from fleetscope.simulate.faults import parse_fault
from fleetscope.simulate.serve import QueryAPI
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
def test_xid_counters_read_through_prometheus_count_only_what_rose_in_the_window(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    old = (KERNEL_LOGS / "xid31-62-45.dmesg.log").read_text()
    log.write_text(old)
    collector = LiveCollector([], IncidentStore(tmp_path / "incidents.db"), tmp_path / "window")
    xid_series = "fleetscope_gpu_xid_errors_total"
    with (
        running_exporter(log, FakeNvml.from_capture(H100_X8)) as exporter,
        prometheus_server(tmp_path, [f"127.0.0.1:{exporter.port}"]) as base,
    ):
        wait_for(lambda: bool(promql(base, xid_series)), timeout=60, interval=0.5)
        first = sum(float(r["value"][1]) for r in promql(base, xid_series))
        time.sleep(4)  # the window below (3 s) now starts after the counters' first scrape
        collector.sources = [PromQLSource(base, window=timedelta(seconds=3))]
        assert collector.run_once()["incident"] is False  # counted before the window: old news

        with log.open("a") as more:
            more.write(old)
        wait_for(lambda: sum(float(r["value"][1]) for r in promql(base, xid_series)) > first, timeout=30)
        report = collector.run_once()
    top = report["root_causes"][0]
    assert report["incident"] is True
    assert (top["node"], top["gpu_pci_bus_id"]) == ("127.0.0.1", "0000:0a:00.0")


class _Clock:
    """Monotonic seconds the test moves by hand, so a window can pass without waiting for it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fault_leaves_the_window_and_its_incident_resolves(
    tmp_path: Path, exporter: Exporter, kernel_log: Path
) -> None:
    clock = _Clock()
    source = ExporterSource([f"127.0.0.1:{exporter.port}"], window=timedelta(minutes=5), clock=clock)
    store = IncidentStore(tmp_path / "incidents.db")
    collector = LiveCollector([source], store, tmp_path / "window", resolve_after=timedelta(seconds=1))
    collector.run_once()  # the first read of a target is its baseline
    fallen = (KERNEL_LOGS / "fallen-off-bus-multiline.dmesg.log").read_text()
    kernel_log.write_text(fallen)
    wait_for(lambda: len(_events(exporter)) == len(fallen.splitlines()))
    clock.now += 30
    assert collector.run_once()["incident"] is True
    assert store.count("open") == 1

    clock.now += 5 * 60 + 1  # the lines are older than the window now; the exporter still lists them
    report = collector.run_once()
    assert report["incident"] is False
    assert not (tmp_path / "window" / "127.0.0.1" / "kernel.log").exists()
    wait_for(lambda: collector.run_once() is not None and store.count("open") == 0, timeout=10)
    (incident,) = store.recent(state="resolved")
    assert incident.resolved_by == "quiet"


def test_old_lines_an_exporter_holds_when_first_read_are_a_baseline(
    tmp_path: Path, exporter: Exporter, kernel_log: Path
) -> None:
    fallen = (KERNEL_LOGS / "fallen-off-bus-multiline.dmesg.log").read_text()
    kernel_log.write_text(fallen)
    wait_for(lambda: len(_events(exporter)) == len(fallen.splitlines()))
    collector = LiveCollector(
        [ExporterSource([f"127.0.0.1:{exporter.port}"])],
        IncidentStore(tmp_path / "i.db"),
        tmp_path / "window",
    )
    assert collector.run_once()["incident"] is False
    assert collector.run_once()["incident"] is False


def test_window_exposition_keeps_gauges_and_turns_counters_into_increases() -> None:
    before = (
        "# TYPE fleetscope_gpu_xid_errors_total counter\n"
        'fleetscope_gpu_xid_errors_total{gpu="0",xid="13"} 4\n'
        'fleetscope_gpu_xid_errors_total{gpu="1",xid="79"} 2\n'
        "# TYPE fleetscope_gpu_temperature_celsius gauge\n"
        'fleetscope_gpu_temperature_celsius{gpu="0"} 61\n'
    )
    after = (
        "# TYPE fleetscope_gpu_xid_errors_total counter\n"
        'fleetscope_gpu_xid_errors_total{gpu="0",xid="13"} 4\n'  # flat: left out
        'fleetscope_gpu_xid_errors_total{gpu="1",xid="79"} 1\n'  # dropped: reset (exporter restart)
        'fleetscope_gpu_xid_errors_total{gpu="2",xid="48"} 3\n'  # new series: all of it is new
        "# TYPE fleetscope_gpu_temperature_celsius gauge\n"
        'fleetscope_gpu_temperature_celsius{gpu="0"} 88\n'
        'DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{gpu="3"} 7\n'  # untyped, counter by its name
    )
    baseline, start = window_families(before, None)
    baseline_text = exposition(baseline)
    assert (
        "xid_errors" not in baseline_text
        and 'fleetscope_gpu_temperature_celsius{gpu="0"} 61.0' in baseline_text
    )
    families, _ = window_families(after, start)
    text = exposition(families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples == {
        ("fleetscope_gpu_xid_errors_total", (("gpu", "1"), ("xid", "79"))): 1.0,
        ("fleetscope_gpu_xid_errors_total", (("gpu", "2"), ("xid", "48"))): 3.0,
        ("fleetscope_gpu_temperature_celsius", (("gpu", "0"),)): 88.0,
        ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", (("gpu", "3"),)): 7.0,
    }


def test_targets_on_one_host_stay_apart_and_can_be_named() -> None:
    assert target_nodes(["node-01:9847", "node-02:9847"]) == {
        "http://node-01:9847": "node-01",
        "http://node-02:9847": "node-02",
    }
    # Two exporters behind SSH tunnels on one machine: host:port, never the host alone.
    assert target_nodes(["127.0.0.1:19001", "127.0.0.1:19002", "gpu-7=127.0.0.1:19003"]) == {
        "http://127.0.0.1:19001": "127.0.0.1:19001",
        "http://127.0.0.1:19002": "127.0.0.1:19002",
        "http://127.0.0.1:19003": "gpu-7",
    }
    with pytest.raises(ValueError, match="same node 'gpu-7'"):
        target_nodes(["gpu-7=10.0.0.1:9847", "gpu-7=10.0.0.2:9847"])


def test_journald_wall_clock_times_are_kept_in_the_window(tmp_path: Path, kernel_log: Path) -> None:
    now = datetime.now(UTC)
    records = [
        {
            "MESSAGE": "NVRM: Xid (PCI:0000:3b:00): 79, pid=0, GPU has fallen off the bus.",
            "__REALTIME_TIMESTAMP": str(int((now - timedelta(seconds=20)).timestamp() * 1e6)),
        },
        {
            "MESSAGE": "NVRM: Xid (PCI:0000:5d:00): 48, pid=0, An uncorrectable double bit error (DBE) "
            "has been detected on GPU in the framebuffer at partition 0, subpartition 0.",
            "__REALTIME_TIMESTAMP": str(int((now - timedelta(hours=3)).timestamp() * 1e6)),
        },
    ]
    with running_exporter(kernel_log) as exporter:
        source = ExporterSource([f"127.0.0.1:{exporter.port}"])
        source.fetch()
        kernel_log.write_text("".join(json.dumps(r) + "\n" for r in records))
        wait_for(lambda: len(_events(exporter)) == 2)
        (snapshot,) = source.fetch().values()
    (line,) = snapshot.kernel_lines  # the Xid 48 from three hours ago is outside the window
    stamp, rest = line.split(" ", 1)
    assert abs((datetime.fromisoformat(stamp) - (now - timedelta(seconds=20))).total_seconds()) < 1
    assert rest.startswith("127.0.0.1 kernel: NVRM: Xid (PCI:0000:3b:00): 79")


def test_targets_come_from_a_file_sd_file_reread_every_cycle(tmp_path: Path, exporter: Exporter) -> None:
    listed = tmp_path / "targets.json"
    source = FileSDSource(listed)
    with pytest.raises(SourceError, match=r"targets file .*targets\.json: \[Errno 2\]"):
        source.fetch()
    listed.write_text('{"targets": []}')
    with pytest.raises(SourceError, match="not a file_sd list"):
        source.fetch()
    address = f"127.0.0.1:{exporter.port}"
    listed.write_text(json.dumps([{"targets": [address], "labels": {"node": "node-07", "rack": "r2"}}]))
    assert list(source.fetch()) == ["node-07"]
    dead = f"127.0.0.1:{free_port()}"
    listed.write_text(json.dumps([{"targets": [address]}, {"targets": [dead]}]))
    assert list(source.fetch()) == ["127.0.0.1:" + str(exporter.port)]  # two targets on one host
    assert dead in source.skipped[0]


def _diagnosis(report: dict[str, Any]) -> dict[str, Any]:
    """A report without what only names where evidence was read (sources, line counts, notes)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "source"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip({k: v for k, v in report.items() if k not in ("unparsed", "understood", "notes")})


def test_samples_straight_to_the_engine_and_the_written_window_give_the_same_report(
    tmp_path: Path, exporter: Exporter, kernel_log: Path
) -> None:
    window = tmp_path / "window"
    collector = LiveCollector(
        [ExporterSource([f"127.0.0.1:{exporter.port}"])], IncidentStore(tmp_path / "i.db"), window
    )
    healthy = collector.run_once()
    assert _diagnosis(healthy) == _diagnosis(investigate(window).to_dict())
    fallen = (KERNEL_LOGS / "fallen-off-bus-multiline.dmesg.log").read_text()
    kernel_log.write_text(fallen)
    wait_for(lambda: len(_events(exporter)) == len(fallen.splitlines()))
    live = collector.run_once()
    offline = investigate(window).to_dict()
    assert live["incident"] is True and live["root_causes"][0]["layer"] == "gpu_hardware"
    assert _diagnosis(live) == _diagnosis(offline)
    assert live["understood"]["lines"] > 0
    # The live path quotes where it read each item: the node's samples and events, not a file.
    sources = {q["source"].rsplit(":", 1)[0] for q in live["root_causes"][0]["evidence"]}
    assert sources == {"127.0.0.1/events", "127.0.0.1/metrics"}


def test_without_a_window_dir_nothing_is_written(tmp_path: Path, exporter: Exporter) -> None:
    collector = LiveCollector(
        [ExporterSource([f"127.0.0.1:{exporter.port}"])], IncidentStore(tmp_path / "i.db")
    )
    report = collector.run_once()
    assert report["verdict"] == "healthy"
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_dcgm_counters_keep_their_names_and_histogram_sums_count_only_the_window() -> None:
    before = (
        "# TYPE DCGM_FI_DEV_XID_ERRORS counter\n"
        'DCGM_FI_DEV_XID_ERRORS{gpu="0",Hostname="n1"} 2\n'
        "# TYPE fleetscope_training_step_duration_seconds histogram\n"
        'fleetscope_training_step_duration_seconds_bucket{rank="0",le="+Inf"} 40\n'
        'fleetscope_training_step_duration_seconds_sum{rank="0"} 40.0\n'
        'fleetscope_training_step_duration_seconds_count{rank="0"} 40\n'
    )
    after = before.replace("} 2\n", "} 5\n").replace(" 40", " 70")
    _, start = window_families(before, None)
    families, _ = window_families(after, start)
    samples = {s.name: s.value for f in families for s in f.samples}
    assert samples == {
        "DCGM_FI_DEV_XID_ERRORS": 3.0,  # as dcgm-exporter wrote it; the client's parser would add "_total"
        "fleetscope_training_step_duration_seconds_bucket": 30.0,
        "fleetscope_training_step_duration_seconds_sum": 30.0,
        "fleetscope_training_step_duration_seconds_count": 30.0,
    }
    # Written out and read back as a bundle, the name is the same.
    text = exposition(families)
    assert "# TYPE DCGM_FI_DEV_XID_ERRORS untyped" in text
    assert next((s.name, s.value) for f in text_string_to_metric_families(text) for s in f.samples) == (
        "DCGM_FI_DEV_XID_ERRORS",
        3.0,
    )


def test_a_dcgm_exporter_target_without_events_is_read_for_its_metrics(tmp_path: Path) -> None:
    """A real HTTP server that, like dcgm-exporter, serves /metrics and answers 404 elsewhere; its Xid
    counter rises between two cycles."""
    import http.server
    import threading

    scrape = {"xid": 0}

    class Dcgm(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = (
                "# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.\n"
                "# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n"
                f'DCGM_FI_DEV_XID_ERRORS{{gpu="2",UUID="GPU-1",pci_bus_id="00000000:5D:00.0",'
                f'Hostname="n7"}} {scrape["xid"]}\n'
            ).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dcgm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = ExporterSource([f"n7=127.0.0.1:{server.server_address[1]}"])
        collector = LiveCollector([source], IncidentStore(tmp_path / "i.db"))
        assert collector.run_once()["verdict"] == "healthy" and source.skipped == []
        scrape["xid"] = 79
        report = collector.run_once()
    finally:
        server.shutdown()
        server.server_close()
    top = report["root_causes"][0]
    assert (top["node"], top["gpu"], top["layer"]) == ("n7", 2, "gpu_hardware")


def test_a_target_that_answers_with_an_error_is_unread_not_missing() -> None:
    import http.server
    import threading

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(500)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dead = free_port()
    try:
        source = ExporterSource([f"a=127.0.0.1:{server.server_address[1]}", f"b=127.0.0.1:{dead}"], timeout=2)
        with pytest.raises(SourceError, match="500"):
            source.fetch()
    finally:
        server.shutdown()
        server.server_close()
    assert source.down == ["b"]  # nothing answered on b's port; a answered, badly


def test_a_promql_window_holds_one_family_per_series_name_and_every_sample_the_rule_keeps() -> None:
    """Against the simulator's Prometheus-compatible API (an ECC storm on one GPU, so counters rise): the
    window is, per node, gauges as they are and counters that rose as their rise, nothing else, one
    family per series name; checked against the API's own two answers."""
    start = 1_800_000_000.0
    cluster = SimulatedCluster(
        2, [parse_fault("ecc_storm@1:3+0", 2)], links=2, start=start, clock=lambda: start + 330
    )
    api = QueryAPI(cluster).start()
    try:
        window = PromQLSource(api.url, window=timedelta(seconds=300)).fetch()
        now, then = promql(api.url, PROMQL_SELECTOR), promql(api.url, f"{PROMQL_SELECTOR} offset 300s")
    finally:
        api.stop()

    def series(result: dict[str, Any]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        labels = dict(result["metric"])
        node, name = labels.pop("instance"), labels.pop("__name__")
        labels.pop("job")
        return node, name, tuple(sorted(labels.items()))

    before = {series(r): float(r["value"][1]) for r in then}
    expected = {}
    for r in now:
        key, value = series(r), float(r["value"][1])
        if not is_counter_sample(key[1]):
            expected[key] = value
        else:  # a rise; a drop is a reset, after which all of the value is new
            rise = value if value < before.get(key, 0.0) else value - before.get(key, 0.0)
            if rise > 0:
                expected[key] = rise
    got = {}
    for node, snapshot in window.items():
        names = [family.name for family in snapshot.families]
        assert len(names) == len(set(names)), node
        for family in snapshot.families:
            for s in family.samples:
                assert s.name == family.name
                got[(node, s.name, tuple(sorted(s.labels.items())))] = s.value
    assert got == expected
    risen = {(node, name) for node, name, _ in got if is_counter_sample(name)}
    assert ("sim-node-0001", "fleetscope_gpu_ecc_volatile_corrected_errors_total") in risen


@contextmanager
def _answering(bodies: dict[str, bytes]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering the query API with a fixed body per query (status 200);
    a body cut short is sent with the length of the whole, so the connection closes inside it."""

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)["query"][0]
            body = bodies.get(query, bodies.get("*", b""))
            whole = bodies.get(f"length of {query}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(int(whole) if whole else len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _answer(instances: int, per_instance: int) -> bytes:
    results = [
        {
            "metric": {"__name__": "fleetscope_gpu_up", "gpu": str(g), "instance": f"n{i}:9847", "job": "x"},
            "value": [1800000000.0, "1"],
        }
        for i in range(instances)
        for g in range(per_instance)
    ]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": results}}).encode()


def test_a_promql_answer_is_read_series_by_series_and_its_status_checked() -> None:
    """A success answer far longer than the envelope's kept head (64 KiB) is read whole; an answer with
    status ``error``, one that is not JSON, and one cut off inside its result are source errors that keep
    nothing of the cycle."""
    long = _answer(300, 8)  # 2,400 series, about 250 KB
    assert len(long) > 200_000
    with _answering({"*": long}) as url:
        window = PromQLSource(url).fetch()
    assert len(window) == 300 and {len(s.families[0].samples) for s in window.values()} == {8}

    error = (
        b'{"status":"error","errorType":"execution","error":"query processing would load too many samples"}'
    )
    cut = long[: len(long) // 2]
    for bodies, message in (
        ({"*": error}, "execution: query processing would load too many samples"),
        ({"*": b"<html><body>502 Bad Gateway</body></html>"}, "not JSON"),
        (
            {"*": long, PROMQL_SELECTOR: cut, f"length of {PROMQL_SELECTOR}": str(len(long)).encode()},
            "not JSON",
        ),
    ):
        with _answering(bodies) as url, pytest.raises(SourceError, match=message):
            PromQLSource(url, timeout=10).fetch()
