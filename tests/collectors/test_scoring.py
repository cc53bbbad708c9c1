"""knowledge/scoring.yaml: every weight, threshold and default text has its reason, and every name the code
asks for exists."""

from __future__ import annotations

import ast
from pathlib import Path

from fleetscope.collectors.knowledge import load, scoring, scoring_list, scoring_text

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
            lookups = {"scoring": scoring, "scoring_text": scoring_text, "scoring_list": scoring_list}
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in lookups:
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    used += 1
                    lookups[node.func.id](arg.value)  # type: ignore[attr-defined,operator]  # KeyError if missing
    assert used > 30


def test_list_entries_name_their_reasons_per_item() -> None:
    """Metrics in priority order and counter limits: each item says why it is there and where it points."""
    for name in ("persistent_deviation.metrics", "rates.limits"):
        for item in scoring_list(name):
            assert str(item.get("why", "")).strip(), f"{name}: {item.get('name')} has no reason"
            assert "layer" in item, f"{name}: {item.get('name')} has no layer"
    for limit in scoring_list("rates.limits"):
        assert ("per_window" in limit) != ("per_second" in limit), limit["name"]
