"""The frozen set: bundles built from public reports by someone who had not read the engine, scored once
before any fix and never tuned on (``tests/collectors/frozen/README.md``).

The engine gets a copy of each bundle without its ``case.json`` (the product must never see the answer)
and is judged by the rule of the shared ``score_cases.py`` (:func:`tests.collectors.judging.judge`).
Cases wrong at freeze time may stay wrong: the test fails only on a regression, a case right at freeze
time (``verdicts.json``) that is wrong now. The current score is printed (``pytest -s`` or ``-rA``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetscope.collectors import investigate
from tests.collectors.judging import judge

FROZEN = Path(__file__).parent / "frozen"
CASES = sorted(FROZEN.glob("*/case.json"))
VERDICTS: dict[str, str] = json.loads((FROZEN / "verdicts.json").read_text())


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Investigate a copy of every frozen bundle without its case.json; map case id -> problems."""
    problems: dict[str, list[str]] = {}
    for case_json in CASES:
        bundle = case_json.parent
        copy = tmp_path_factory.mktemp("frozen") / bundle.name
        shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("case.json"))
        expected: dict[str, Any] = json.loads(case_json.read_text())["expected"]
        problems[bundle.name] = judge(expected, investigate(copy).to_dict())
    return problems


def test_every_frozen_case_has_its_freeze_time_verdict() -> None:
    assert {c.parent.name for c in CASES} == set(VERDICTS)
    assert set(VERDICTS.values()) <= {"pass", "fail"}


def test_no_case_right_at_freeze_time_is_wrong_now(judged: dict[str, list[str]]) -> None:
    right = sorted(name for name, problems in judged.items() if not problems)
    at_freeze = sorted(name for name, verdict in VERDICTS.items() if verdict == "pass")
    for round_ in sorted({name[0] for name in judged}):
        now = [name for name in right if name[0] == round_]
        then = [name for name in at_freeze if name[0] == round_]
        total = sum(name[0] == round_ for name in judged)
        print(f"\nfrozen round {round_}: {len(now)} of {total} right now; {len(then)} at freeze time", end="")
    print()
    for name, problems in sorted(judged.items()):
        print(f"  {'PASS' if not problems else 'FAIL'} {name}: {'; '.join(problems) or 'right'}")
    regressions = {name: judged[name] for name in at_freeze if judged[name]}
    assert not regressions, f"right at freeze time, wrong now: {regressions}"
