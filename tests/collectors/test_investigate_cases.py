"""Every incident bundle in examples/incidents must get the diagnosis its case.json records.

The judging rule is the one of the shared ``score_cases.py``: ``incident`` must match; for an incident the
first root cause must have the expected layer, node and GPU (each where given; a GPU matches by index or
by the PCI bus id named in the case's summary).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collectors import investigate

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "examples" / "incidents").glob("*/case.json"))


def _norm_pci(text: str | None) -> str | None:
    if not text:
        return None
    m = re.search(r"(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})", str(text))
    return f"{m.group(2)}:{m.group(3)}".lower() if m else None


def judge(expected: dict, got: dict) -> list[str]:
    """Return what is wrong with ``got`` (empty when the diagnosis is right)."""
    if bool(got.get("incident")) != expected.get("incident", True):
        return [f"incident={got.get('incident')}, want {expected.get('incident', True)}"]
    if not expected.get("incident", True):
        return []
    causes = got.get("root_causes") or []
    if not causes:
        return ["no root cause"]
    top = causes[0]
    problems = []
    if expected.get("layer") and top.get("layer") != expected["layer"]:
        problems.append(f"layer={top.get('layer')}, want {expected['layer']}")
    if expected.get("node") and top.get("node") != expected["node"]:
        problems.append(f"node={top.get('node')}, want {expected['node']}")
    if expected.get("gpu") is not None:
        want_pci = _norm_pci(expected.get("summary"))
        by_pci = want_pci is not None and _norm_pci(top.get("gpu_pci_bus_id")) == want_pci
        if top.get("gpu") != expected["gpu"] and not by_pci:
            problems.append(f"gpu={top.get('gpu')}/{top.get('gpu_pci_bus_id')}, want {expected['gpu']}")
    return problems


def test_the_case_set_is_present() -> None:
    assert len(CASES) >= 29


@pytest.mark.parametrize("case_json", CASES, ids=[c.parent.name for c in CASES])
def test_case_diagnosis(case_json: Path) -> None:
    expected = json.loads(case_json.read_text())["expected"]
    got = investigate(case_json.parent).to_dict()
    assert judge(expected, got) == []
    if got["incident"]:
        top = got["root_causes"][0]
        assert top["evidence"], "a root cause must quote its evidence"
        assert 0 < top["confidence"] <= 1
    if expected.get("incident", True) and expected.get("layer") is None:
        # The report established no cause: the answer must say it is unsure.
        assert got["root_causes"][0]["confidence"] <= 0.4
        assert "unsure" in got["root_causes"][0]["summary"]


def test_cli_json_matches_the_contract() -> None:
    bundle = ROOT / "examples" / "incidents" / "50-multinode-xid119-gsp-timeout-collective-hang"
    proc = subprocess.run(
        [sys.executable, "-m", "console.cli", "investigate", "--format", "json", str(bundle)],
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
        "summary",
        "action",
        "evidence",
    }
    assert (top["layer"], top["node"], top["gpu_pci_bus_id"]) == ("gpu_hardware", "node-02", "0000:5d:00.0")
    assert top["evidence"][0]["source"] == "node-02/dmesg.log:2"
    # Every rank's watchdog timeout is a symptom explained by the Xid, not a cause of its own.
    watchdog = [s for s in out["symptoms"] if s["kind"].startswith("c10d_watchdog_timeout")]
    assert watchdog and all(s["explained_by"] == 0 for s in watchdog)
    assert set(out["unparsed"]) == {"files", "lines"}


def test_cli_text_puts_the_answer_first() -> None:
    bundle = ROOT / "examples" / "incidents" / "25-nvlink-two-links-inactive-nvlink-status"
    proc = subprocess.run(
        [sys.executable, "-m", "console.cli", "investigate", str(bundle)],
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
