"""The hash-chained audit log finds edited, removed, reordered and cut records."""

from __future__ import annotations

import json
from pathlib import Path

from fleetscope.lineage import AuditLog, verify_log
from fleetscope.lineage.auditlog import record_hash


def _log(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append("record", {"label": "Run", "id": f"r{i}"})
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("\n".join(lines) + "\n")


def test_intact_log_verifies(tmp_path: Path) -> None:
    result = verify_log(_log(tmp_path).path)
    assert result.ok and result.records == 5


def test_edited_record_is_named(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[2] = lines[2].replace('"r2"', '"r9"')
    _write(log, lines)
    assert [(p.kind, p.seq) for p in verify_log(log.path).problems] == [("edited", 3)]


def test_rehashed_edit_breaks_the_next_link(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    record = json.loads(lines[1])
    record["data"]["id"] = "forged"
    record["hash"] = record_hash(record)
    lines[1] = json.dumps(record)
    _write(log, lines)
    problems = verify_log(log.path).problems
    assert [(p.kind, p.seq) for p in problems] == [("edited", 3)]
    assert "record 2 was altered" in problems[0].message


def test_removed_and_reordered_records(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    _write(log, lines[:2] + lines[3:])
    assert [(p.kind, p.message) for p in verify_log(log.path).problems] == [
        ("removed", "record(s) 3 missing before line 3")
    ]
    _write(log, [lines[0], lines[2], lines[1], lines[3], lines[4]])
    kinds = [(p.kind, p.seq) for p in verify_log(log.path).problems]
    assert ("reordered", 2) in kinds


def test_cut_tail_is_found_with_the_exported_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    exported = log.export(tmp_path / "export.json")
    _write(log, _lines(log)[:3])
    result = verify_log(log.path, expect_head=exported.head, expect_records=exported.records)
    assert [p.kind for p in result.problems] == ["truncated"]
    document = json.loads((tmp_path / "export.json").read_text())
    assert document["records"] == 5 and document["verified"] is True and len(document["entries"]) == 5


def test_records_with_any_line_separator_in_their_text_verify_and_export(tmp_path: Path) -> None:
    # JSON writes U+2028, U+2029, U+0085 and the like as they are; only "\n" ends a record.
    log = AuditLog(tmp_path / "audit.jsonl")
    names = ["line\u2028sep", "para\u2029sep", "next\x85line", "plain"]
    written = [log.append("record", {"label": "Model", "id": name}) for name in names]
    result = verify_log(log.path)
    assert result.ok and result.records == 4 and result.head == written[-1]["hash"]
    assert [record["data"]["id"] for record in log.records()] == names
    exported = log.export(tmp_path / "export.json")
    assert exported.ok
    document = json.loads((tmp_path / "export.json").read_text())
    assert [entry["data"]["id"] for entry in document["entries"]] == names
    assert all(record_hash(entry) == entry["hash"] for entry in document["entries"])
