"""Bad input gets a clear message or is counted as unparsed; it never crashes the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fleetscope.collectors import investigate

ROOT = Path(__file__).resolve().parents[2]
XID79 = "[ 1843.308145] NVRM: Xid (PCI:0000:b3:00): 79, pid=1, GPU has fallen off the bus.\n"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetscope.console.cli", "investigate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_missing_path_exits_2_with_a_message(tmp_path: Path) -> None:
    proc = run_cli("--format", "json", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "bundle not found" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_file_instead_of_a_folder_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "dmesg.log"
    f.write_text(XID79)
    proc = run_cli(str(f))
    assert proc.returncode == 2 and "not a folder" in proc.stderr


def test_bad_format_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("--format", "xml", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_empty_bundle_exits_3_and_claims_nothing(tmp_path: Path) -> None:
    proc = run_cli("--format", "json", str(tmp_path))
    assert proc.returncode == 3
    assert "nothing readable" in proc.stderr
    assert proc.stdout == ""  # no report: "incident": false would claim a healthy system


def test_binary_file_is_skipped_and_counted(tmp_path: Path) -> None:
    node = tmp_path / "node-01"
    node.mkdir()
    (node / "core.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 64)
    (node / "dmesg.log").write_text(XID79)
    result = investigate(tmp_path)
    assert result.unparsed.files == 1
    assert result.unparsed.notes == ["node-01/core.bin: binary file, skipped"]
    top = result.to_dict()["root_causes"][0]
    assert (top["layer"], top["gpu_pci_bus_id"]) == ("gpu_hardware", "0000:b3:00.0")


def test_only_binary_files_exit_3(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(b"\x00\x01\x02" * 100)
    proc = run_cli("--format", "json", str(tmp_path))
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert "blob: binary file, skipped" in proc.stderr


def test_non_utf8_bytes_are_replaced_not_fatal(tmp_path: Path) -> None:
    node = tmp_path / "node-01"
    node.mkdir()
    (node / "kern.log").write_bytes(
        b"garbage \xff\xfe\xc3( here\n" + XID79.encode().replace(b"pid=1", b"pid=1\xe9")
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert top["gpu_pci_bus_id"] == "0000:b3:00.0"
    assert top["evidence"][0]["source"] == "node-01/kern.log:2"
    assert "\ufffd" in top["evidence"][0]["text"]


def test_one_megabyte_line_is_cut_and_later_lines_keep_their_numbers(tmp_path: Path) -> None:
    node = tmp_path / "node-01"
    node.mkdir()
    (node / "dmesg.log").write_bytes(b"[ 1.0] NVRM: " + b"x" * (3 << 20) + b"\n" + XID79.encode())
    result = investigate(tmp_path)
    top = result.to_dict()["root_causes"][0]
    assert top["evidence"][0]["source"] == "node-01/dmesg.log:2"
    assert result.unparsed.lines == 1
    assert "node-01/dmesg.log: 1 line(s) longer than 1 MB were cut" in result.unparsed.notes


def test_unparsed_counts_files_and_lines(tmp_path: Path) -> None:
    node = tmp_path / "node-01"
    node.mkdir()
    (node / "notes.txt").write_text("hello\nnothing to see\nat all\n")
    (node / "dmesg.log").write_text("[ 1.0] Linux version 6.8.0\n" + XID79)
    result = investigate(tmp_path)
    assert (result.unparsed.files, result.unparsed.lines) == (1, 4)


def test_a_json_document_is_not_read_as_a_log(tmp_path: Path) -> None:
    # A report that describes a fault is not evidence of one; JSON lines (journald -o json) still are logs.
    (tmp_path / "report.json").write_text('{\n  "summary": "NVRM: Xid (PCI:0000:b3:00): 79"\n}\n')
    result = investigate(tmp_path)
    assert result.to_dict()["incident"] is False
    assert result.unparsed.files == 1
    (tmp_path / "kern.json").write_text('{"MESSAGE": "NVRM: Xid (PCI:0000:b3:00): 79, pid=1, name=x, y"}\n')
    assert investigate(tmp_path).to_dict()["root_causes"][0]["kind"] == "xid:79"


def test_nul_padding_of_a_crashed_syslog_is_dropped_not_a_reason_to_skip(tmp_path: Path) -> None:
    node = tmp_path / "node-01"
    node.mkdir()
    chatter = b"".join(b"Jan  2 03:04:%02d node-01 kernel: eth0: link up\n" % i for i in range(50))
    (node / "syslog").write_bytes(chatter + b"\x00" * 4096 + XID79.encode())
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["layer"], top["gpu_pci_bus_id"]) == ("gpu_hardware", "0000:b3:00.0")
    assert "\x00" not in top["evidence"][0]["text"]


def test_a_bundle_of_empty_files_is_nothing_readable(tmp_path: Path) -> None:
    (tmp_path / "node-01").mkdir()
    (tmp_path / "node-01" / "dmesg.log").write_bytes(b"")
    proc = run_cli(str(tmp_path))
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert "node-01/dmesg.log: empty file, skipped" in proc.stderr


def test_an_empty_path_is_a_usage_error_not_the_current_folder() -> None:
    proc = run_cli("")
    assert proc.returncode == 2
    assert "bundle path is empty" in proc.stderr


def test_a_folder_of_bundles_is_named_as_one_in_the_notes(tmp_path: Path) -> None:
    for case in ("case-a", "case-b"):
        (tmp_path / case / "node-01").mkdir(parents=True)
        (tmp_path / case / "node-01" / "dmesg.log").write_text(XID79)
    notes = investigate(tmp_path).to_dict()["notes"]
    assert any("2 of the 2 node folders hold folders" in n and "one bundle at a time" in n for n in notes)
    # A bundle laid out as the engine expects gets no such note.
    assert not any("bundle at a time" in n for n in investigate(tmp_path / "case-a").to_dict()["notes"])
