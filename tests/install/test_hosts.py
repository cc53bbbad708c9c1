"""Host names, Slurm-style ranges, hosts files, the file_sd targets file and the command's usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetscope.install import Host, HostSpecError, collect_hosts, expand_range, parse_host, update_file_sd
from fleetscope.install.hosts import read_hosts_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("node-[01-03]", ["node-01", "node-02", "node-03"]),
        ("gpu[1-3,7]", ["gpu1", "gpu2", "gpu3", "gpu7"]),
        ("node-[098-101]", ["node-098", "node-099", "node-100", "node-101"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("plain", ["plain"]),
        ("n[5]", ["n5"]),
    ],
)
def test_slurm_ranges_expand_like_scontrol_show_hostnames(expression: str, names: list[str]) -> None:
    assert expand_range(expression) == names


def test_a_range_of_64_nodes() -> None:
    names = expand_range("node-[01-64]")
    assert len(names) == 64 and names[0] == "node-01" and names[-1] == "node-64"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("node-[3-1]", "reversed host range [3-1]"),
        ("node-[a-b]", "malformed host range 'node-[a-b]'"),
        ("node-[01-", "malformed host range"),
        ("node-[]", "malformed host range"),
    ],
)
def test_bad_ranges_are_named(expression: str, message: str) -> None:
    with pytest.raises(HostSpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        expand_range(expression)


def test_slurm_compressed_lists_as_sinfo_prints_them() -> None:
    hosts = parse_host("gpu-[01-02,04],login1")
    assert [h.name for h in hosts] == ["gpu-01", "gpu-02", "gpu-04", "login1"]
    with pytest.raises(HostSpecError, match="empty host name"):
        parse_host("gpu-01,,gpu-02")


def test_user_port_and_ipv6_literals() -> None:
    assert parse_host("root@node-[1-2]:2222") == [Host("node-1", 2222, "root"), Host("node-2", 2222, "root")]
    assert parse_host("[fd00::1]:22") == [Host("fd00::1", 22, None)]
    assert parse_host("[fd00::1]") == [Host("fd00::1", None, None)]
    assert Host("fd00::1", 22).label == "[fd00::1]:22"
    for bad, message in [("node:99999", "bad SSH port"), ("@node", "empty user"), (":22", "empty host")]:
        with pytest.raises(HostSpecError, match=message):
            parse_host(bad)


def test_hosts_file_with_overrides_comments_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(
        "# rack 1\nnode-[01-02] prefix=/srv/fleetscope exporter_port=9900\n\nnode-02  # listed twice\n"
        "admin@login:2200 python=/usr/bin/python3.12\n"
    )
    hosts = collect_hosts(["node-01"], [path])
    assert [h.label for h in hosts] == ["node-01", "node-02", "login:2200"]
    assert hosts[0].overrides == ()  # the command line's mention comes first and wins
    assert dict(hosts[1].overrides) == {"prefix": "/srv/fleetscope", "exporter_port": 9900}
    assert hosts[2].user == "admin" and dict(hosts[2].overrides) == {"python": "/usr/bin/python3.12"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("node-01 colour=blue", "hosts:1: expected KEY=VALUE with KEY one of prefix, exporter_port, python"),
        ("node-01 exporter_port=http", "hosts:1: exporter_port must be a port number"),
        ("node-[2-1]", "hosts:1: reversed host range"),
        ("node-01 prefix=/", "hosts:1: the install prefix must be an absolute folder other than /"),
        ("node-01 prefix=opt/fleetscope", "hosts:1: the install prefix must be an absolute folder"),
    ],
)
def test_bad_hosts_file_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "hosts"
    path.write_text(line + "\n")
    with pytest.raises(HostSpecError, match=message.replace("[", r"\[")):
        read_hosts_file(path)


def test_no_hosts_at_all(tmp_path: Path) -> None:
    empty = tmp_path / "hosts"
    empty.write_text("# nothing yet\n")
    with pytest.raises(HostSpecError, match="no hosts given"):
        collect_hosts([], [empty])
    with pytest.raises(HostSpecError, match="cannot read hosts file"):
        collect_hosts([], [tmp_path / "missing"])


def test_file_sd_keeps_other_groups_and_is_valid_for_prometheus(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    path.write_text(
        json.dumps([{"targets": ["a:9847"], "labels": {"rack": "1"}}, {"targets": ["other:9100"]}])
    )
    assert update_file_sd(path, add=["b:9847", "c:9847"]) == ["a:9847", "b:9847", "c:9847"]
    assert update_file_sd(path, remove=["a:9847"]) == ["b:9847", "c:9847"]
    groups = json.loads(path.read_text())
    assert groups == [{"targets": ["b:9847", "c:9847"], "labels": {"rack": "1"}}, {"targets": ["other:9100"]}]
    assert path.stat().st_mode & 0o777 == 0o644
    path.write_text('{"targets": []}')
    with pytest.raises(ValueError, match="not a Prometheus file_sd JSON list"):
        update_file_sd(path, add=["x:1"])
    assert path.read_text() == '{"targets": []}'  # a bad file is left as it was


def test_file_sd_written_by_the_installer_passes_promtool(tmp_path: Path) -> None:
    promtool = "/usr/bin/promtool"
    if not os.path.exists(promtool):
        pytest.skip("promtool not installed (Debian package prometheus)")
    targets = tmp_path / "fleetscope.json"
    update_file_sd(targets, add=["node-01:9847", "[fd00::1]:9847"])
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"scrape_configs:\n  - job_name: fleetscope\n    file_sd_configs:\n      - files: ['{targets}']\n"
    )
    done = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["install", "node-[9-1]"], "fleetscope install: reversed host range [9-1] in 'node-[9-1]'"),
        (["install"], "fleetscope install: no hosts given"),
        (
            ["uninstall", "-f", "/nonexistent/hosts"],
            "fleetscope uninstall: cannot read hosts file /nonexistent/hosts",
        ),
        (
            ["install", "node-01", "--wheelhouse", "/nonexistent"],
            "fleetscope install: wheelhouse /nonexistent is not",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleetscope.console.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
