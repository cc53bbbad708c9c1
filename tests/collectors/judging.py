"""The judging rule of the shared ``score_cases.py``, for tests over incident bundles, and a helper that
writes a bundle and investigates it.

``incident`` must match; for an incident the first root cause must have the expected layer, node and GPU
(each where given; a GPU matches by index or by the PCI bus id named in the case's summary). A case whose
report established no cause (``layer`` null) must be answered with low confidence and certainty ``unsure``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleetscope.collectors import investigate


def _norm_pci(text: str | None) -> str | None:
    if not text:
        return None
    m = re.search(r"(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})", str(text))
    return f"{m.group(2)}:{m.group(3)}".lower() if m else None


def diagnose(root: Path, files: dict[str, str]) -> dict[str, Any]:
    """Write a bundle of ``{relative path: text}`` under ``root`` and return its investigation report."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    report: dict[str, Any] = investigate(root).to_dict()
    return report


def judge(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
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


@contextmanager
def without_answer(bundle: Path) -> Iterator[Path]:
    """A copy of ``bundle`` without its answer key (the top-level ``case.json``), for the engine to read.

    The engine knows nothing of ``case.json``; the harness keeps the answer out of what it hands over.
    """
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        copy = Path(tmp) / bundle.name
        shutil.copytree(bundle, copy, ignore=lambda d, names: ["case.json"] if Path(d) == bundle else [])
        yield copy


def check_case(case_json: Path) -> None:
    """Investigate the bundle beside ``case_json`` (without it) and assert the diagnosis it records."""
    expected = json.loads(case_json.read_text())["expected"]
    with without_answer(case_json.parent) as bundle:
        got = investigate(bundle).to_dict()
    assert judge(expected, got) == []
    if got["incident"]:
        top = got["root_causes"][0]
        assert top["evidence"], "a root cause must quote its evidence"
        assert 0 < top["confidence"] <= 1
    if expected.get("incident", True) and expected.get("layer") is None:
        # The report established no cause: the answer must say it is unsure.
        assert got["root_causes"][0]["confidence"] <= 0.4
        assert got["root_causes"][0]["certainty"] == "unsure"
