"""``fleetscope install`` / ``uninstall`` against three real sshd hosts and one that cannot be reached.

The steps run in order on the same hosts, as an operator would: install (one host unreachable), re-run,
upgrade, a broken upgrade that rolls back, uninstall. Each test runs the real command line in a
subprocess and checks what a user sees (the table, the exit code, /metrics) and what is on the hosts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.install.conftest import ROOT, Cluster, SshHost, Wheelhouses
from tests.servers import free_port

pytestmark = pytest.mark.integration


def fleetscope(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-m", "fleetscope.console.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def rows(stdout: str) -> dict[str, str]:
    """Table rows keyed by host label (the first word of each row)."""
    found = {}
    for line in stdout.splitlines():
        words = line.split()
        if words and words[0].startswith("127.0.0.1:"):
            found[words[0]] = " ".join(words[1:])
    return found


def metrics(host: SshHost) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{host.exporter_port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def supervisor_pid(host: SshHost) -> int:
    return int((host.prefix / "run" / "exporter.pid").read_text())


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def exporter_command_line(host: SshHost) -> str:
    """The command line of the exporter the host's supervisor runs (its process group)."""
    found = subprocess.run(
        ["pgrep", "-a", "-g", str(supervisor_pid(host)), "-f", "fleetscope exporter"],
        capture_output=True,
        text=True,
    )
    (line,) = found.stdout.splitlines()
    return line


def hosts_file(cluster: Cluster, hosts: list[SshHost], extra: str = "") -> Path:
    path = cluster.workdir / "hosts.txt"
    path.write_text("# test hosts\n" + "".join(h.hosts_line() + "\n" for h in hosts) + extra)
    return path


@pytest.fixture(scope="module")
def dead_host() -> str:
    """A hosts-file line for an SSH port nothing listens on."""
    return f"127.0.0.1:{free_port()} prefix=/nonexistent exporter_port={free_port()}\n"


def install(
    cluster: Cluster, hosts_path: Path, wheelhouse: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return fleetscope(
        "install",
        "--hosts-file",
        str(hosts_path),
        "--wheelhouse",
        str(wheelhouse),
        "--exporter-bind",
        "127.0.0.1",
        "--file-sd",
        str(cluster.workdir / "fleetscope.json"),
        *cluster.ssh_options(),
        *extra,
    )


def test_install_on_every_reachable_host_and_report_the_unreachable_one(
    cluster: Cluster, wheelhouses: Wheelhouses, dead_host: str
) -> None:
    done = install(cluster, hosts_file(cluster, cluster.hosts, dead_host), wheelhouses.current.path)
    assert done.returncode == 1, done.stderr  # one host failed: the exit code says so
    table = rows(done.stdout)
    version = wheelhouses.current.version
    for host in cluster.hosts:
        assert table[host.label].startswith(f"installed {version} 127.0.0.1:{host.exporter_port}"), (
            done.stdout
        )
        assert (host.prefix / "current").readlink() == Path(f"releases/{version}")
        assert alive(supervisor_pid(host))
        # The operator's view: the exporter answers on /metrics.
        assert "fleetscope_scrape_collector_success" in metrics(host)
    dead = dead_host.split()[0]
    assert table[dead] == "unreachable - - connection refused (no SSH server on that port?)", done.stdout
    assert "3 of 4 hosts ok" in done.stdout
    targets = json.loads((cluster.workdir / "fleetscope.json").read_text())
    assert targets == [
        {"targets": sorted(f"127.0.0.1:{h.exporter_port}" for h in cluster.hosts), "labels": {}}
    ]


def test_rerun_at_the_same_version_changes_nothing(cluster: Cluster, wheelhouses: Wheelhouses) -> None:
    pids = [supervisor_pid(h) for h in cluster.hosts]
    venvs = [(h.prefix / "current" / "venv").stat().st_ino for h in cluster.hosts]
    done = install(cluster, hosts_file(cluster, cluster.hosts), wheelhouses.current.path)
    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    assert all(table[h.label].startswith("unchanged") for h in cluster.hosts), done.stdout
    assert [supervisor_pid(h) for h in cluster.hosts] == pids  # not restarted
    assert [(h.prefix / "current" / "venv").stat().st_ino for h in cluster.hosts] == venvs  # not reinstalled


def test_the_supervisor_restarts_an_exporter_that_died(cluster: Cluster) -> None:
    host = cluster.hosts[0]
    group = supervisor_pid(host)
    found = subprocess.run(
        ["pgrep", "-g", str(group), "-f", "fleetscope exporter"], capture_output=True, text=True
    )
    (exporter,) = found.stdout.split()
    os.kill(int(exporter), signal.SIGKILL)
    for _ in range(150):  # bounded: the supervisor waits 2 s before restarting
        try:
            assert "fleetscope_scrape_collector_success" in metrics(host)
            break
        except OSError:
            time.sleep(0.1)
    else:
        pytest.fail("the supervisor did not restart the exporter")
    assert supervisor_pid(host) == group
    assert int(exporter_command_line(host).split()[0]) != exporter


def test_upgrade_in_place(cluster: Cluster, wheelhouses: Wheelhouses) -> None:
    old, new = wheelhouses.current.version, wheelhouses.newer.version
    done = install(cluster, hosts_file(cluster, cluster.hosts), wheelhouses.newer.path)
    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    for host in cluster.hosts:
        assert table[host.label].startswith(f"upgraded {new}"), done.stdout
        assert f"{old} → {new}" in table[host.label]
        assert (host.prefix / "current").readlink() == Path(f"releases/{new}")
        assert sorted(p.name for p in (host.prefix / "releases").iterdir()) == [new]  # the old one is gone
        version = subprocess.run(
            [str(host.prefix / "current" / "venv" / "bin" / "fleetscope"), "--version"],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"]},
        ).stdout
        assert version.strip() == f"fleetscope {new}"
        # The exporter answering is the new release's, not an old one left running.
        assert f"/releases/{new}/venv/bin/python" in exporter_command_line(host)
        assert "fleetscope_scrape_collector_success" in metrics(host)


def test_a_build_whose_exporter_does_not_come_up_is_rolled_back(
    cluster: Cluster, wheelhouses: Wheelhouses
) -> None:
    host = cluster.hosts[0]
    good, bad = wheelhouses.newer.version, wheelhouses.broken.version
    done = install(cluster, hosts_file(cluster, [host]), wheelhouses.broken.path, "--timeout", "8")
    assert done.returncode == 1, done.stdout + done.stderr
    row = rows(done.stdout)[host.label]
    assert row.startswith(f"rolled back {good} 127.0.0.1:{host.exporter_port}"), done.stdout
    # The reason comes from the exporter's own log on the host.
    assert "broken build for the rollback test" in row
    assert (host.prefix / "current").readlink() == Path(f"releases/{good}")
    assert not (host.prefix / "releases" / bad).exists()
    assert f"/releases/{good}/venv/bin/python" in exporter_command_line(host)
    assert "fleetscope_scrape_collector_success" in metrics(host)


def test_a_wheelhouse_missing_a_dependency_changes_nothing_on_the_host(
    cluster: Cluster, wheelhouses: Wheelhouses, tmp_path: Path
) -> None:
    host = cluster.hosts[1]
    pid, good = supervisor_pid(host), wheelhouses.newer.version
    incomplete = tmp_path / "wheels"
    incomplete.mkdir()
    for wheel in wheelhouses.broken.wheels:
        if not wheel.name.startswith("rich-"):
            os.link(wheel, incomplete / wheel.name)
    done = install(cluster, hosts_file(cluster, [host]), incomplete)
    assert done.returncode == 1, done.stdout + done.stderr
    row = rows(done.stdout)[host.label]
    assert row.startswith(f"failed {good} - pip install:"), done.stdout
    assert "rich" in row  # pip names what it could not find
    assert (host.prefix / "current").readlink() == Path(f"releases/{good}")
    assert sorted(p.name for p in (host.prefix / "releases").iterdir()) == [good]  # no half-made release
    assert not (host.prefix / "staging").exists()
    assert supervisor_pid(host) == pid  # the running exporter was never stopped
    assert "fleetscope_scrape_collector_success" in metrics(host)


def test_uninstall_removes_everything(cluster: Cluster, wheelhouses: Wheelhouses, dead_host: str) -> None:
    pids = [supervisor_pid(h) for h in cluster.hosts]
    args = ["--hosts-file", str(hosts_file(cluster, cluster.hosts, dead_host)), *cluster.ssh_options()]
    file_sd = ["--file-sd", str(cluster.workdir / "fleetscope.json")]
    done = fleetscope("uninstall", *args, *file_sd)
    assert done.returncode == 1, done.stdout + done.stderr  # the dead host is still unreachable
    table = rows(done.stdout)
    for host, pid in zip(cluster.hosts, pids, strict=True):
        assert table[host.label].startswith("uninstalled"), done.stdout
        assert table[host.label].endswith(f"removed {wheelhouses.newer.version} from {host.prefix}")
        assert not host.prefix.exists()
        assert not alive(pid)
        with pytest.raises(OSError):
            metrics(host)
    assert table[dead_host.split()[0]].startswith("unreachable")
    assert json.loads((cluster.workdir / "fleetscope.json").read_text())[0]["targets"] == []

    again = fleetscope(
        "uninstall", "--hosts-file", str(hosts_file(cluster, cluster.hosts)), *cluster.ssh_options()
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(rows(again.stdout)[h.label].startswith("not installed") for h in cluster.hosts)
