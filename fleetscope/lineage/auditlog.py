"""Tamper-evident audit log: every graph write, appended to a SHA-256 hash chain (JSON lines).

Each record is ``{"seq", "at", "op", "data", "prev", "hash"}``: ``prev`` is the previous record's
``hash`` (64 zeros for the first) and ``hash`` is the SHA-256 of the record's canonical JSON
(sorted keys, no spaces) without ``hash``. Editing a record changes its hash; re-hashing an edited
record breaks the next record's ``prev``; removing or reordering records breaks the ``seq`` run and
the chain. Removing records from the end leaves a valid shorter chain, so auditors keep the head
hash and count that :meth:`AuditLog.export` prints and pass them to :func:`verify_log`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetscope.lineage.schema import now_text

GENESIS = "0" * 64
EXPORT_FORMAT = "fleetscope-lineage-audit-log/1"


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of a record's canonical JSON, leaving out its own ``hash``."""
    body = {key: value for key, value in record.items() if key != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Problem:
    """One fault :func:`verify_log` found.

    Attributes:
        line: 1-based line of the log file (0 for a fault of the whole log).
        seq: the record's ``seq`` as written, if readable.
        kind: ``edited``, ``removed``, ``reordered``, ``unreadable`` or ``truncated``.
        message: what is wrong, for people.
    """

    line: int
    seq: int | None
    kind: str
    message: str


@dataclass
class Verification:
    """The result of :func:`verify_log`: ``ok`` when there are no problems."""

    records: int
    head: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """An append-only, hash-chained JSON-lines file.

    Appends take an exclusive ``flock`` on the file, so several fleetscope processes (the HTTP
    endpoint and a command line) can share one log, and each append is fsynced before it returns.

    Args:
        path: the log file (created with its folder if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    def _last(self, handle: Any) -> dict[str, Any] | None:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        if end == 0:
            return None
        # Read back from the end only as far as the last line, so appends stay O(1) in log size.
        chunk, start = b"", end
        while start > 0 and chunk.count(b"\n") < 2:
            start = max(0, start - 65536)
            handle.seek(start)
            chunk = handle.read(end - start)
        last_line = chunk.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return dict(json.loads(last_line))

    def append(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append one record.

        Args:
            op: what was written (``record``, ``incident``, ``openlineage``).
            data: the write's content (JSON-serialisable).

        Returns:
            The record as written, with ``seq`` and ``hash``.
        """
        with open(self.path, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                last = self._last(handle)
                record: dict[str, Any] = {
                    "seq": (last["seq"] + 1) if last else 1,
                    "at": now_text(),
                    "op": op,
                    "data": data,
                    "prev": last["hash"] if last else GENESIS,
                }
                record["hash"] = record_hash(record)
                handle.seek(0, os.SEEK_END)
                line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                handle.write(line.encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return record

    def export(self, out: Path) -> Verification:
        """Write the log for auditors: one JSON document with the verification result, the head
        hash and count (to keep apart from the log, so a cut tail is found later) and the records.

        Returns:
            The verification of the exported log.
        """
        result = verify_log(self.path)
        records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        document = {
            "format": EXPORT_FORMAT,
            "source": str(self.path),
            "exported_at": now_text(),
            "records": result.records,
            "head": result.head,
            "verified": result.ok,
            "problems": [problem.__dict__ for problem in result.problems],
            "entries": records,
        }
        Path(out).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        return result


def verify_log(
    path: Path, *, expect_head: str | None = None, expect_records: int | None = None
) -> Verification:
    """Check a log's hash chain and say which records were edited, removed or reordered.

    Args:
        path: the JSON-lines log.
        expect_head: head hash kept from an earlier export; a log whose chain does not reach it has
            lost records at its end.
        expect_records: record count kept with ``expect_head``.

    Returns:
        The verification; ``problems`` lists every fault, in file order.
    """
    problems: list[Problem] = []
    prev_hash, prev_seq, count, head = GENESIS, 0, 0, GENESIS
    seen_hashes: dict[str, int] = {}
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        count += 1
        try:
            record = json.loads(line)
            seq = int(record["seq"])
            stored, prev = str(record["hash"]), str(record["prev"])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(
                Problem(line_no, None, "unreadable", f"line {line_no} is not a log record: {exc}")
            )
            prev_seq += 1
            continue
        if record_hash(record) != stored:
            problems.append(
                Problem(line_no, seq, "edited", f"record {seq} (line {line_no}) does not match its hash")
            )
        if seq <= prev_seq:
            problems.append(
                Problem(
                    line_no, seq, "reordered", f"record {seq} (line {line_no}) comes after record {prev_seq}"
                )
            )
        elif seq > prev_seq + 1:
            missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}-{seq - 1}"
            problems.append(
                Problem(line_no, seq, "removed", f"record(s) {missing} missing before line {line_no}")
            )
        elif prev != prev_hash:
            problems.append(
                Problem(
                    line_no,
                    seq,
                    "edited",
                    f"record {seq} (line {line_no}) does not chain to record {prev_seq}: "
                    f"record {prev_seq} was altered and re-hashed, or replaced",
                )
            )
        seen_hashes[stored] = seq
        prev_hash, prev_seq, head = stored, max(prev_seq, seq), stored
    if expect_head is not None and head != expect_head:
        where = seen_hashes.get(expect_head)
        message = (
            f"the log ends {count - where} record(s) after the expected head (record {where})"
            if where is not None
            else "the expected head hash is not in the log: records at the end were removed or replaced"
        )
        problems.append(Problem(0, None, "truncated", message))
    elif expect_records is not None and count != expect_records:
        problems.append(
            Problem(0, None, "truncated", f"the log holds {count} records, expected {expect_records}")
        )
    return Verification(count, head, problems)
