"""Red-team bundles: incidents reconstructed from public reports that the engine was not built on.

Each folder under ``tests/collectors/redteam`` is a bundle like those of ``examples/incidents`` (its
``case.json`` names the report and what was reconstructed); the diagnosis must match by the judging
rule of the shared ``score_cases.py`` (:mod:`tests.collectors.judging`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors import investigate
from tests.collectors.judging import check_case

CASES = sorted((Path(__file__).parent / "redteam").glob("*/case.json"))


def test_the_red_team_set_is_present() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case_json", CASES, ids=[c.parent.name for c in CASES])
def test_red_team_diagnosis(case_json: Path) -> None:
    check_case(case_json)


def _bundle(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_a_user_stop_does_not_hide_an_application_error_xid(tmp_path: Path) -> None:
    # Ctrl-C explains Xid 43 (a warning-level teardown) but not Xid 13, a real fault in the kernel code.
    bundle = _bundle(
        tmp_path,
        {
            "node-01/train.log": "[default0]:KeyboardInterrupt\n",
            "node-01/dmesg.txt": (
                "[5.1] NVRM: Xid (PCI:0000:18:00): 13, pid=7, name=python, "
                "Graphics Exception: ESR 0x404490=0x80000001\n"
                "[5.2] NVRM: Xid (PCI:0000:2a:00): 43, pid=8, name=python, Ch 00000008\n"
            ),
        },
    )
    out = investigate(bundle).to_dict()
    assert out["incident"] is True
    assert out["root_causes"][0]["kind"] == "xid:13"
    assert [r["kind"] for r in out["root_causes"]].count("xid:43") == 0


def test_an_oom_kill_of_another_pid_stays_the_jobs(tmp_path: Path) -> None:
    # The OOM victim (pid 500) is not the DataLoader worker PyTorch reported dead (pid 12847).
    bundle = _bundle(
        tmp_path,
        {
            "node-01/train.log": "RuntimeError: DataLoader worker (pid 12847) is killed by signal: Killed.\n",
            "node-01/kern.log": "[9.0] Out of memory: Killed process 500 (python) total-vm:1kB\n",
        },
    )
    kinds = {r["kind"]: r["layer"] for r in investigate(bundle).to_dict()["root_causes"]}
    assert kinds["signature:host_oom_killer"] == "job"
