"""Every incident bundle in fleetscope/examples/incidents must get the diagnosis its case.json records.

The judging rule is the one of the shared ``score_cases.py`` (see :mod:`tests.collectors.judging`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collectors.judging import check_case, without_answer

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "fleetscope" / "examples" / "incidents").glob("*/case.json"))


def test_the_case_set_is_present() -> None:
    assert len(CASES) >= 29


@pytest.mark.parametrize("case_json", CASES, ids=[c.parent.name for c in CASES])
def test_case_diagnosis(case_json: Path) -> None:
    check_case(case_json)


def test_cli_json_matches_the_contract() -> None:
    bundle = (
        ROOT / "fleetscope" / "examples" / "incidents" / "50-multinode-xid119-gsp-timeout-collective-hang"
    )
    with without_answer(bundle) as copy:
        proc = subprocess.run(
            [sys.executable, "-m", "fleetscope.console.cli", "investigate", "--format", "json", str(copy)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"incident", "root_causes", "timeline", "symptoms", "unparsed"}
    top = out["root_causes"][0]
    assert set(top) >= {
        "layer",
        "node",
        "gpu",
        "gpu_pci_bus_id",
        "confidence",
        "certainty",
        "summary",
        "action",
        "evidence",
    }
    assert (top["layer"], top["node"], top["gpu_pci_bus_id"]) == ("gpu_hardware", "node-02", "0000:5d:00.0")
    assert top["evidence"][0]["source"] == "node-02/dmesg.log:2"
    # Every rank's watchdog timeout is a symptom explained by the Xid, not a cause of its own.
    watchdog = [s for s in out["symptoms"] if s["kind"].startswith("c10d_watchdog_timeout")]
    assert watchdog and all(s["explained_by"] == 0 for s in watchdog)
    assert set(out["unparsed"]) == {"files", "lines", "errors"}


def test_cli_text_puts_the_answer_first() -> None:
    bundle = ROOT / "fleetscope" / "examples" / "incidents" / "25-nvlink-two-links-inactive-nvlink-status"
    with without_answer(bundle) as copy:
        proc = subprocess.run(
            [sys.executable, "-m", "fleetscope.console.cli", "investigate", str(copy)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
            env={"COLUMNS": "200", "PATH": ""},
        )
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("Root cause (nvlink) node node-01  GPU 3")
    assert "node-01/nvidia-smi-nvlink-s.txt:5" in proc.stdout
