"""Prometheus alerting and recording rules: valid, unit-tested with promtool, true to the Xid catalogue."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fleetscope.collectors import knowledge

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "fleetscope" / "dashboards" / "rules").glob("*.yml"))
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing"
)


@needs_promtool
def test_rule_files_pass_promtool_check() -> None:
    assert [p.name for p in RULES] == ["fleetscope-alerts.yml", "fleetscope-recording.yml"]
    result = subprocess.run(["promtool", "check", "rules", *map(str, RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rules_unit_tests_pass() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", "rules_test.yml"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_critical_xids_are_those_the_catalogue_rates_critical() -> None:
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load(RULES[0].read_text())["groups"]
        for rule in group["rules"]
    }
    critical = re.search(r'xid=~"([0-9|]+)"', rules["FleetscopeGpuCriticalXid"]["expr"])
    other = re.search(r'xid!~"([0-9|]+)"', rules["FleetscopeGpuXid"]["expr"])
    assert critical and other and critical.group(1) == other.group(1)
    catalogue = knowledge.load("xid.yaml")["xids"]
    expected = sorted(
        n for n, entry in catalogue.items() if entry["severity"] == "critical" and not entry.get("unused")
    )
    assert [int(x) for x in critical.group(1).split("|")] == expected
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert {"summary", "action"} <= set(rule["annotations"])
