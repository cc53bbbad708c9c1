"""No answer without evidence, and manners: a bundle almost nothing of which was understood says it could
not judge (exit code 4) in the CLI and the console alike; the progress bar moves within one large file;
``| head`` ends quietly; help texts keep a path or a flag on one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetscope.collectors import investigate
from fleetscope.console.investigate_report import verdict_sentence
from tests.collectors.judging import without_answer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "fleetscope" / "examples" / "incidents"
XID_CASE = EXAMPLES / "02-xid119-gsp-rpc-timeout"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetscope.console.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _unknown_text(root: Path, lines: int) -> Path:
    (root / "node-01").mkdir(parents=True)
    with (root / "node-01" / "app.log").open("w") as fh:
        for i in range(lines):
            fh.write(f"{i:08d} lorem ipsum dolor sit amet, consectetur adipiscing elit {i * 7919 % 10007}\n")
    return root


def test_a_bundle_of_unrecognised_text_is_not_judged(tmp_path: Path) -> None:
    bundle = _unknown_text(tmp_path, 20_000)
    result = investigate(bundle)
    assert (result.incident, result.verdict) == (False, "not_judged")
    proc = _cli("investigate", "--format", "json", str(bundle))
    assert proc.returncode == 4, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["incident"], out["verdict"]) == (False, "not_judged")
    assert out["understood"] == {"lines": 0, "of_lines": 20_000}
    text = _cli("investigate", str(bundle), env={"COLUMNS": "200"})
    assert text.returncode == 4
    assert text.stdout.startswith("Could not judge: almost nothing in the bundle was understood (0 of 20000")


def test_a_healthy_example_is_judged_healthy() -> None:
    with without_answer(EXAMPLES / "32-healthy-nvidia-smi-q-idle-no-throttle") as bundle:
        assert investigate(bundle).verdict == "healthy"
        proc = _cli("investigate", "--format", "json", str(bundle))
    assert proc.returncode == 0 and json.loads(proc.stdout)["verdict"] == "healthy"


def test_an_empty_folder_is_nothing_readable_in_cli_and_console(tmp_path: Path) -> None:
    proc = _cli("investigate", str(tmp_path))
    assert (proc.returncode, proc.stdout) == (3, "")
    assert "nothing readable" in proc.stderr
    # The console renders the same report through the same sentence: never "healthy" for an empty folder.
    report = investigate(tmp_path).to_dict()
    assert report["verdict"] == "nothing_readable"
    assert verdict_sentence(report).startswith("Nothing readable")


def test_the_console_page_says_what_the_cli_says(tmp_path: Path) -> None:
    testing = pytest.importorskip("streamlit.testing.v1")
    bundle = _unknown_text(tmp_path / "bundle", 2_000)
    app = testing.AppTest.from_file(str(ROOT / "fleetscope" / "console" / "app.py"), default_timeout=60)
    app.switch_page("views/investigate.py").run()
    app.text_input[0].set_value(str(bundle)).run()
    assert next(w.value for w in app.warning).startswith("Could not judge")
    assert not app.success
    empty = tmp_path / "empty"
    empty.mkdir()
    app.text_input[0].set_value(str(empty)).run()
    assert next(w.value for w in app.warning).startswith("Nothing readable")
    assert not app.success


def test_progress_moves_within_one_large_file(tmp_path: Path) -> None:
    bundle = _unknown_text(tmp_path, 200_000)  # about 16 MB: several read chunks
    calls: list[tuple[int, int]] = []
    investigate(bundle, progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    inside = [done for done, _ in calls if 0 < done < total]
    assert len(inside) >= 2
    assert inside == sorted(inside)
    assert calls[-1] == (total, total)


def test_a_closed_pipe_ends_quietly_with_status_0() -> None:
    for fmt in ("text", "json"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetscope.console.cli", "investigate", "--format", fmt, str(XID_CASE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader goes away before the report is written, as `| head -0` would
        stderr = proc.stderr.read()
        assert proc.wait(timeout=120) == 0
        assert stderr == b""


def test_help_keeps_paths_and_flags_on_one_line() -> None:
    proc = _cli("investigate", "--help", env={"COLUMNS": "60"})
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert any(line.strip() == "fleetscope/examples/incidents/02-xid119-gsp-rpc-timeout" for line in lines)
    assert any(line.strip() == "fleetscope investigate --format json \\" for line in lines)
    assert any(line.strip().startswith("4  could not judge") for line in lines)


def test_the_text_timeline_keeps_one_entry_to_two_lines_in_a_narrow_pipe() -> None:
    proc = _cli(
        "investigate",
        str(EXAMPLES / "50-multinode-xid119-gsp-timeout-collective-hang"),
        env={"COLUMNS": "80"},
    )
    lines = proc.stdout.splitlines()
    timeline = lines[
        lines.index("Timeline") + 1 : next(i for i, x in enumerate(lines) if x.startswith("Read without"))
    ]
    entries = [line for line in timeline if line.startswith("  ") and not line.startswith("      ")]
    texts = [line for line in timeline if line.startswith("      ")]
    assert entries and len(texts) == len(entries)
    assert entries[0].split()[1:4] == ["node-02", "framework", "node-02/train.log:2"]
    assert all(len(line) <= 80 for line in texts)
