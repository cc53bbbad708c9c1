"""What the installer writes and runs on a host, checked by the host's own tools: the unit file by
``systemd-analyze verify`` (Debian's systemd; no systemd runs here, so the SSH tests use the
supervisor), every script by ``sh -n`` (dash, Debian's ``/bin/sh``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fleetscope.install import remote


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze (Debian systemd) not installed"
)
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    prefix = tmp_path / "opt" / "fleetscope"
    binary = prefix / "current" / "venv" / "bin" / "fleetscope"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    unit = tmp_path / remote.UNIT
    unit.write_text(remote.systemd_unit(str(prefix), "", 9847))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert f"ExecStart={binary} exporter --web.listen-address :9847\n" in unit.read_text()


@pytest.mark.parametrize(
    "script",
    [
        remote.supervisor_script("/opt/my fleetscope", "127.0.0.1", 9847),
        remote.probe("/opt/my fleetscope", "python3"),
        remote.prepare_staging("/opt/my fleetscope"),
        remote.install_release("/opt/my fleetscope", "python3", "0.1.0"),
        remote.stop("/opt/my fleetscope", systemd=True),
        remote.start("/opt/my fleetscope", systemd=False),
        remote.start("/opt/my fleetscope", systemd=True),
        remote.switch("/opt/my fleetscope", "0.1.0"),
        remote.remove_release("/opt/my fleetscope", "0.1.0"),
        remote.prune_releases("/opt/my fleetscope"),
        remote.log_tail("/opt/my fleetscope", systemd=False),
        remote.uninstall("/opt/my fleetscope"),
    ],
)
def test_scripts_parse_in_dash(script: str) -> None:
    done = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_values_reach_the_host_quoted() -> None:
    """A prefix with spaces or shell characters is one word on the host, never shell syntax."""
    script = remote.probe("/opt/$(touch /tmp/pwned) x", "python3")
    assert "P='/opt/$(touch /tmp/pwned) x'\n" in script
