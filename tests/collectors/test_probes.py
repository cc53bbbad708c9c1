"""The four probes (``tests/collectors/probes``): the diagnosis by the shared judging rule, and the wording
each probe's note asks for (only facts the evidence shows, every GPU named, no lost file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetscope.collectors import investigate
from tests.collectors.judging import check_case, without_answer

PROBES = Path(__file__).parent / "probes"


def _report(name: str) -> dict[str, Any]:
    with without_answer(PROBES / name) as bundle:
        report: dict[str, Any] = investigate(bundle).to_dict()
    return report


def _all_text(report: dict[str, Any]) -> str:
    parts = [f"{r['summary']} {r['action']}" for r in report["root_causes"]]
    parts += [s["summary"] for s in report["symptoms"]]
    return " ".join(parts).lower()


@pytest.mark.parametrize("name", sorted(p.name for p in PROBES.iterdir() if p.is_dir()))
def test_probe_diagnosis(name: str) -> None:
    check_case(PROBES / name / "case.json")


def test_p1_an_ofi_enomem_names_memory_registration_and_no_security_group() -> None:
    report = _report("p1-ofi-enomem")
    top = report["root_causes"][0]
    assert (top["layer"], top["node"]) == ("network", "node-01")
    assert "security group" not in _all_text(report)
    assert "FI_ENOMEM" in top["summary"] and "RC 12" in top["summary"]
    assert "locked-memory" in top["summary"] and "ulimit -l" in top["action"]


def test_p2_zero_step_times_cost_no_line_beside_them() -> None:
    report = _report("p2-zero-step-time-beside-xid79")
    assert report["root_causes"][0]["kind"] == "xid:79"
    assert report["unparsed"]["errors"] == 0
    assert not any("could not be parsed" in n for n in report["notes"])


def test_p3_a_merged_finding_names_both_gpus_in_summary_and_action() -> None:
    top = _report("p3-two-gpus-err-in-smi-table")["root_causes"][0]
    assert top["summary"].startswith(
        "The same fault on 2 GPUs of node-01 (GPU 0 (0000:07:00.0); GPU 1 (0000:0b:00.0))"
    )
    assert top["summary"].count("ERR!") == 2
    assert "07:00.0" in top["action"] and "0B:00.0" in top["action"].upper()


def test_p4_a_recovered_non_fatal_aer_error_is_a_timeline_warning_not_an_incident() -> None:
    report = _report("p4-aer-non-fatal-recovered")
    assert report["incident"] is False
    assert "fell off" not in json.dumps(report) and "dropped off" not in json.dumps(report)
    assert any("Uncorrected (Non-Fatal)" in t["text"] for t in report["timeline"])
