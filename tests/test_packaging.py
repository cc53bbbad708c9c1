"""The wheel: one ``fleetscope`` namespace, what the commands need at run time, nothing of the tests.

Installed into a fresh virtual environment beside the package index's ``console`` (a terminal library)
and ``lineage`` (a genetics toolkit), whose top-level names fleetscope once took, all three must work.
Needs the package index (for the venv's dependencies), hence ``integration``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = "50-multinode-xid119-gsp-timeout-collective-hang"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("fleetscope-*.whl")
    return built


@pytest.mark.integration
def test_wheel_holds_one_namespace_with_its_data_and_no_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"fleetscope", f"{wheel.name.split('-py3')[0]}.dist-info"}
    assert not [n for n in names if n.startswith("fleetscope/") and "/tests/" in n]
    for needed in (
        "fleetscope/collectors/knowledge/xid.yaml",
        "fleetscope/lineage/spec/OpenLineage.json",
        "fleetscope/dashboards/provisioning/datasources/prometheus.yml",
        "fleetscope/dashboards/rules/fleetscope-alerts.yml",
        f"fleetscope/examples/incidents/{BUNDLE}/case.json",
        "fleetscope/examples/lineage/events.jsonl",
    ):
        assert needed in names
    # Every example bundle file of the source tree is in the wheel (the console offers them).
    shipped = {n for n in names if n.startswith("fleetscope/examples/")}
    in_tree = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "fleetscope" / "examples").rglob("*") if p.is_file()
    }
    assert in_tree <= shipped


@pytest.mark.integration
def test_wheel_installs_beside_console_and_lineage_from_the_index(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
            "console",
            "lineage",
        ],
        check=True,
        env=environ,
        capture_output=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import fleetscope, pathlib; print(pathlib.Path(fleetscope.__file__).parent)"],
        check=True,
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert site.startswith(str(env_dir)), site

    # fleetscope's main job, from the installed package data, outside the source tree.
    report = subprocess.run(
        [
            str(env_dir / "bin" / "fleetscope"),
            "investigate",
            "--format",
            "json",
            f"{site}/examples/incidents/{BUNDLE}",
        ],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    top = json.loads(report.stdout)["root_causes"][0]
    expected = json.loads(Path(site, "examples", "incidents", BUNDLE, "case.json").read_text())["expected"]
    assert (top["layer"], top["node"], top["gpu"]) == (expected["layer"], expected["node"], expected["gpu"])

    # The other projects' packages, in the same process as fleetscope's.
    others = subprocess.run(
        [
            str(python),
            "-c",
            "import fleetscope.collectors, fleetscope.console.cli, console, lineage\n"
            "from console import fg\n"
            "print(console.__file__)\nprint(lineage.__file__)\n"
            "print(type(lineage.Lineage(output_dir='out')).__name__)\nprint(fg.red('ok'))",
        ],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert others.returncode == 0, others.stderr
    console_file, lineage_file, made, coloured = others.stdout.splitlines()
    assert console_file.startswith(f"{env_dir}/lib/") and "/site-packages/console/" in console_file
    assert lineage_file.startswith(f"{env_dir}/lib/") and "/site-packages/lineage/" in lineage_file
    assert made == "Lineage"
    assert "ok" in coloured
