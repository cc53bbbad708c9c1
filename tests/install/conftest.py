"""Real SSH test hosts for the installer, and the wheelhouses it ships.

Each host is Debian's OpenSSH server (``openssh-server``) started on a free 127.0.0.1 port with its own
host key, authorized key and install root; all keys are made in the test's temporary folders. The
wheelhouses hold fleetscope's wheel built from this tree (and two variants: a newer version, and a
newer version whose exporter cannot start) beside the dependencies' wheels, built once per session.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetscope.install import Wheelhouse, build_wheelhouse, open_wheelhouse
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshHost:
    """One sshd on 127.0.0.1; ``prefix`` is its install root, ``exporter_port`` its exporter's port."""

    ssh_port: int
    prefix: Path
    exporter_port: int

    @property
    def label(self) -> str:
        return f"127.0.0.1:{self.ssh_port}"

    def hosts_line(self) -> str:
        return f"{self.label} prefix={self.prefix} exporter_port={self.exporter_port} python={sys.executable}"


@dataclass(frozen=True)
class Cluster:
    """The test hosts and the SSH client files that reach them."""

    hosts: list[SshHost]
    identity: Path
    known_hosts: Path
    workdir: Path

    def ssh_options(self) -> list[str]:
        return ["--identity", str(self.identity), "--known-hosts", str(self.known_hosts)]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd on port {port} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"sshd on port {port} did not listen within {timeout} s")


def _stop_exporters(prefix: Path) -> None:
    """Stop a supervisor an unfinished test left running (its process group: it and the exporter)."""
    pid_file = prefix / "run" / "exporter.pid"
    if pid_file.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three sshd hosts on 127.0.0.1, each with its own install root; root only (sshd must be)."""
    if not os.path.exists(SSHD):
        pytest.skip("sshd not installed (Debian package openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the SSH test hosts need root (sshd logs users in)")
    work = tmp_path_factory.mktemp("ssh-cluster")
    identity = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(identity)], check=True)
    # sshd refuses to start without its privilege-separation folder (made by the Debian service unit).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    hosts: list[SshHost] = []
    processes: list[subprocess.Popen[bytes]] = []
    known: list[str] = []
    try:
        for n in range(3):
            home = work / f"host{n}"
            home.mkdir()
            host_key = home / "ssh_host_ed25519_key"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
            shutil.copy(identity.with_suffix(".pub"), home / "authorized_keys")
            port = free_port()
            config = home / "sshd_config"
            config.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {home / 'authorized_keys'}\nPidFile none\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                "Subsystem sftp internal-sftp\n"
            )
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            processes.append(process)
            _wait_for_port(port, process)
            public = (home / "ssh_host_ed25519_key.pub").read_text().split()
            known.append(f"[127.0.0.1]:{port} {public[0]} {public[1]}")
            hosts.append(SshHost(port, home / "fleetscope", free_port()))
        known_hosts = work / "known_hosts"
        known_hosts.write_text("\n".join(known) + "\n")
        yield Cluster(hosts, identity, known_hosts, work)
    finally:
        for host in hosts:
            _stop_exporters(host.prefix)
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def _source_copy(dest: Path, version: str, broken: bool = False) -> Path:
    """This tree's package with another version (and, if ``broken``, an exporter that cannot start)."""
    dest.mkdir()
    shutil.copy(ROOT / "README.md", dest)
    shutil.copytree(ROOT / "fleetscope", dest / "fleetscope", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    (dest / "pyproject.toml").write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject))
    if broken:
        server = dest / "fleetscope" / "exporters" / "server.py"
        server.write_text(server.read_text() + '\nraise RuntimeError("broken build for the rollback test")\n')
    return dest


def _setuptools_here() -> bool:
    """Whether the installed setuptools can build fleetscope (its build-system needs 77 or newer);
    then builds skip the isolated build environment, which pip fills from the index every time."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 77
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


_SETUPTOOLS_HERE = _setuptools_here()


def _variant(base: Wheelhouse, work: Path, version: str, broken: bool = False) -> Wheelhouse:
    """A wheelhouse with the base's dependency wheels and a fleetscope wheel of ``version``."""
    source = _source_copy(work / f"src-{version}", version, broken)
    house = work / f"wheels-{version}"
    house.mkdir()
    for wheel in base.wheels:
        if not wheel.name.startswith("fleetscope-"):
            os.link(wheel, house / wheel.name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            *(["--no-build-isolation"] if _SETUPTOOLS_HERE else []),
            "-w",
            str(house),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return open_wheelhouse(house)


@dataclass(frozen=True)
class Wheelhouses:
    """The release hosts start with, a newer one, and a newer one whose exporter cannot start."""

    current: Wheelhouse
    newer: Wheelhouse
    broken: Wheelhouse


@pytest.fixture(scope="session")
def wheelhouses(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouses:
    """Built once per session: ``pip wheel`` of this tree and its dependencies (from the pip cache or
    the package index), then two variants that share the dependency wheels."""
    work = tmp_path_factory.mktemp("wheelhouses")
    version = re.search(r'(?m)^version = "(.*)"$', (ROOT / "pyproject.toml").read_text())
    assert version is not None
    source = _source_copy(work / "src", version.group(1))
    current = build_wheelhouse(work / "wheels", str(source), build_isolation=not _SETUPTOOLS_HERE)
    return Wheelhouses(
        current,
        _variant(current, work, f"{current.version}.post1"),
        _variant(current, work, f"{current.version}.post2", broken=True),
    )
