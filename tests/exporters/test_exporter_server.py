"""The exporter over real HTTP on 127.0.0.1, its configuration layers and its command line."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fleetscope.console.cli import app
from fleetscope.exporters.config import ENV, ConfigError, ExporterConfig, load_config
from fleetscope.exporters.registry import registrations
from fleetscope.exporters.server import Exporter
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_X8, KERNEL_LOGS, running_exporter, samples, wait_for

DEFAULT_COLLECTORS = {r.name for r in registrations() if r.default}


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture
def no_driver(tmp_path: Path) -> Iterator[Exporter]:
    (tmp_path / "kern.log").write_bytes((KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes())
    with running_exporter(tmp_path / "kern.log", FakeNvml.without_driver()) as exporter:
        yield exporter


def test_without_driver_host_metrics_are_still_served(no_driver: Exporter) -> None:
    status, content_type, body = get(f"http://127.0.0.1:{no_driver.port}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    result = samples(body.decode())
    success = {
        dict(labels)["collector"]: v for (n, labels), v in result.items() if n.endswith("collector_success")
    }
    assert set(success) == DEFAULT_COLLECTORS
    assert (success["host"], success["gpu"], success["xid"]) == (1, 0, 1)
    assert result[("fleetscope_host_memory_total_bytes", ())] == 24684092 * 1024
    assert ("fleetscope_host_network_receive_bytes_total", (("device", "eth0"),)) in result
    assert not any(name.startswith("fleetscope_gpu_") and "xid" not in name for name, _ in result)


def test_events_endpoint_returns_recent_kernel_events(no_driver: Exporter) -> None:
    base = f"http://127.0.0.1:{no_driver.port}"
    wait_for(lambda: len(json.loads(get(base + "/events")[2])["events"]) == 12)
    status, content_type, body = get(base + "/events?limit=2")
    assert status == 200 and content_type == "application/json"
    document = json.loads(body)
    assert document["error"] is None and document["source"].endswith("kern.log")
    assert [e["xid"] for e in document["events"]] == [45, 45]
    assert document["events"][-1]["raw"].startswith("[14397.322674] NVRM: Xid (PCI:0000:0a:00): 45")
    assert document["events"][-1]["pci_bus_id"] == "0000:0a:00.0"
    assert get(base + "/events?limit=x")[0] == 400
    assert get(base + "/nothing")[0] == 404


def test_openmetrics_is_served_when_asked(no_driver: Exporter) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{no_driver.port}/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().endswith(b"# EOF\n")


def test_xid_series_use_the_gpu_index_from_nvml(tmp_path: Path) -> None:
    # 0000:2a:00.0 is GPU 1 in the H100 capture; the kernel line names it by bus id only.
    (tmp_path / "kern.log").write_bytes(b"NVRM: Xid (PCI:0000:2a:00): 48, pid=7, name=python3, DBE\n")
    with running_exporter(tmp_path / "kern.log", FakeNvml.from_capture(H100_X8)) as exporter:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        key = ("fleetscope_gpu_xid_errors_total", (("gpu", "1"), ("xid", "48")))

        def counted(url: str = url, key: tuple = key) -> bool:
            return samples(get(url)[2].decode()).get(key) == 1

        wait_for(counted)


def test_config_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "exporter.yaml"
    config_file.write_text(
        "listen_address: 127.0.0.1:1111\npath_sysfs: /file/sys\n"
        "path_procfs: /file/proc\ncollector_gpu: false\n"
    )
    env = {ENV["path_sysfs"]: "/env/sys", ENV["path_procfs"]: "/env/proc"}
    config = load_config({"path_procfs": "/flag/proc", "path_sysfs": None}, env, config_file)
    assert config.path_procfs == "/flag/proc"  # flag beats env and file
    assert config.path_sysfs == "/env/sys"  # env beats file; an unset flag (None) does not count
    assert config.listen_address == "127.0.0.1:1111"  # file beats default
    assert config.collector_gpu is False
    assert config.xid_kernel_log == "/dev/kmsg"  # default
    assert ExporterConfig().listen_address == "127.0.0.1:9847"


def test_config_errors_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FLEETSCOPE_EXPORTER_COLLECTOR_GPU"):
        load_config({}, {ENV["collector_gpu"]: "perhaps"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen_adress: 0.0.0.0:9847\n")
    with pytest.raises(ConfigError, match=r"config file .*bad.yaml.*listen_adress"):
        load_config({}, {}, bad)
    with pytest.raises(ConfigError, match=r"command line.*HOST:PORT"):
        load_config({"listen_address": "9847"}, {})


def cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["exporter", *args], env=env)


def test_cli_help_teaches_the_flags() -> None:
    result = cli(["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in (
        "--web.listen-address",
        "--no-collector.gpu",
        "--path.sysfs",
        "--collector.xid.kernel-log",
        "--config",
    ):
        assert flag in result.output
    assert "FLEETSCOPE_EXPORTER_PATH_SYSFS" in result.output and "127.0.0.1:9847" in result.output


def test_cli_rejects_bad_settings_before_starting() -> None:
    result = cli(["--web.listen-address", "nowhere"])
    assert result.exit_code == 2
    assert "HOST:PORT" in result.output


def test_unreadable_procfs_fails_only_the_host_collector(tmp_path: Path) -> None:
    (tmp_path / "kern.log").write_bytes(b"")
    nvml = FakeNvml.from_capture(H100_X8)
    with running_exporter(tmp_path / "kern.log", nvml, path_procfs=str(tmp_path / "no-proc")) as exporter:
        result = samples(get(f"http://127.0.0.1:{exporter.port}/metrics")[2].decode())
        success = {dict(k)["collector"]: v for (n, k), v in result.items() if n.endswith("collector_success")}
        assert (success["host"], success["gpu"], success["xid"]) == (0, 1, 1)
        # What the host collector could still read (network counters from /sys) is kept.
        assert ("fleetscope_host_network_receive_bytes_total", (("device", "lo"),)) in result
        assert ("fleetscope_host_memory_total_bytes", ()) not in result
