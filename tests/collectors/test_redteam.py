"""Red-team bundles: incidents reconstructed from public reports that the engine was not built on.

Each folder under ``tests/collectors/redteam`` is a bundle like those of ``examples/incidents`` (its
``case.json`` names the report and what was reconstructed); the diagnosis must match by the judging
rule of the shared ``score_cases.py`` (:mod:`tests.collectors.judging`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.judging import check_case

CASES = sorted((Path(__file__).parent / "redteam").glob("*/case.json"))


def test_the_red_team_set_is_present() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case_json", CASES, ids=[c.parent.name for c in CASES])
def test_red_team_diagnosis(case_json: Path) -> None:
    check_case(case_json)
