"""``fleetscope console``'s options: bad input is refused before Streamlit starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "node-01=ftp://10.0.0.1:9847"], "is not an HTTP address"),
        (["--prometheus-url", "prometheus 9090"], "is not an HTTP address"),
        (["--targets-file", "/nonexistent/targets.json"], "/nonexistent/targets.json: no such file"),
        (["--config", "/nonexistent/console.yaml"], "/nonexistent/console.yaml: no such file"),
    ],
)
def test_bad_console_options_are_usage_errors(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleetscope.console.cli", "console", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
