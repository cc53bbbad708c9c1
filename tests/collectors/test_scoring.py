"""knowledge/scoring.yaml: every weight, threshold and default text has its reason, and every name the code
asks for exists."""

from __future__ import annotations

import ast
from pathlib import Path

from fleetscope.collectors.knowledge import load, scoring, scoring_text

PACKAGE = Path(__file__).resolve().parents[2] / "fleetscope" / "collectors"


def test_every_entry_has_a_value_or_text_and_a_reason() -> None:
    data = load("scoring.yaml")
    assert data
    for section, entries in data.items():
        for name, entry in entries.items():
            assert set(entry) in ({"value", "reason"}, {"text", "reason"}), f"{section}.{name}"
            assert str(entry["reason"]).strip(), f"{section}.{name} has no reason"


def test_every_name_the_code_uses_exists() -> None:
    used = 0
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("scoring", "scoring_text"):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    used += 1
                    lookup = scoring if node.func.id == "scoring" else scoring_text  # type: ignore[attr-defined]
                    lookup(arg.value)  # raises KeyError if the entry is missing
    assert used > 30
