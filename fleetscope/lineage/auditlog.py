"""Tamper-evident audit log: every graph write, appended to a SHA-256 hash chain (JSON lines).

Each record is ``{"seq", "at", "op", "data", "prev", "hash"}``: ``prev`` is the previous record's
``hash`` (64 zeros for the first) and ``hash`` is the SHA-256 of the record's canonical JSON
(sorted keys, no spaces) without ``hash``. Editing a record changes its hash; re-hashing an edited
record breaks the next record's ``prev``; removing or reordering records breaks the ``seq`` run and
the chain. Removing records from the end leaves a valid shorter chain, so auditors keep the head
hash and count that :meth:`AuditLog.export` prints and pass them to :func:`verify_log`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetscope.lineage.schema import now_text

GENESIS = "0" * 64
EXPORT_FORMAT = "fleetscope-lineage-audit-log/1"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of a record's canonical JSON, leaving out its own ``hash``."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


class LogWriter:
    """Appends to a log held by :meth:`AuditLog.locked`."""

    def __init__(self, handle: Any, path: Path) -> None:
        self._handle = handle
        self._path = path
        self.last: dict[str, Any] | None = None

    def _last(self) -> dict[str, Any] | None:
        for line in _lines_backwards(self._path):
            return dict(json.loads(line))
        return None

    def set_aside_torn_tail(self) -> None:
        """Move a torn last line to ``<log>.torn`` and log a ``torn_tail`` record (class docstring)."""
        handle = self._handle
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            self.last = None
            return
        start = max(0, end - 65536)
        while True:
            handle.seek(start)
            chunk = handle.read(end - start)
            cut = chunk.rfind(b"\n", 0, len(chunk) - 1)
            if cut >= 0 or start == 0:
                break
            start = max(0, start - 65536)
        line_start = start + cut + 1 if cut >= 0 else 0
        handle.seek(line_start)
        tail = handle.read()
        if tail.endswith(b"\n") and _is_record(tail):
            self.last = json.loads(tail)
            return
        aside = self._path.with_name(self._path.name + ".torn")
        with open(aside, "ab") as out:
            out.write(tail if tail.endswith(b"\n") else tail + b"\n")
            out.flush()
            os.fsync(out.fileno())
        handle.truncate(line_start)
        handle.flush()
        os.fsync(handle.fileno())
        self.last = self._last()
        reason = "it has no newline" if not tail.endswith(b"\n") else "it is not a log record"
        self.append(
            [
                (
                    "torn_tail",
                    {
                        "bytes": len(tail),
                        "sha256": hashlib.sha256(tail).hexdigest(),
                        "moved_to": aside.name,
                        "reason": f"the last line was set aside on open: {reason} "
                        "(a crash or a full disk during an append); it was never applied",
                    },
                )
            ]
        )

    def append(self, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Append records, one ``write`` and one ``fsync`` for them all, and one time: they are
        committed together, and records of one time may be applied to the graph together (nodes
        they create get the same ``created_at`` whichever creates them).

        Args:
            items: ``(op, data)`` pairs.

        Returns:
            The records as written.
        """
        records: list[dict[str, Any]] = []
        lines: list[bytes] = []
        at = now_text()
        for op, data in items:
            last = self.last
            record: dict[str, Any] = {
                "seq": (last["seq"] + 1) if last else 1,
                "at": at,
                "op": op,
                "data": data,
                "prev": last["hash"] if last else GENESIS,
            }
            # The canonical JSON of record_hash, written out key by key (sorted: at, data, hash,
            # op, prev, seq) so that the data, the bulk of a record, is serialised once for both
            # the hash and the line.
            head = f'{{"at":{json.dumps(at)},"data":{_canonical(data)}'
            tail = f',"op":{json.dumps(op)},"prev":"{record["prev"]}","seq":{record["seq"]}}}'
            record["hash"] = hashlib.sha256((head + tail).encode()).hexdigest()
            lines.append(f'{head},"hash":"{record["hash"]}"{tail}\n'.encode())
            records.append(record)
            self.last = record
        if lines:
            self._handle.seek(0, os.SEEK_END)
            self._handle.write(b"".join(lines))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        return records


def _is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
        return isinstance(record, dict) and "seq" in record and "hash" in record
    except ValueError:
        return False


def _lines_backwards(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """The non-blank lines of a file, last first, reading it backwards in blocks."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        rest = b""
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            rest = handle.read(end - start) + rest
            end = start
            parts = rest.split(b"\n")
            rest = parts[0]
            for part in reversed(parts[1:]):
                if part.strip():
                    yield part
        if rest.strip():
            yield rest


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
    #: Records appended after the anchor (``expect_head``) that the prefix check covered.
    grown_since_anchor: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """An append-only, hash-chained JSON-lines file: the lineage graph's write-ahead log.

    Writers hold an exclusive ``flock`` on the file (:meth:`locked`) while they append and while
    they apply what they appended to the graph, so several fleetscope processes (the HTTP endpoint
    and a command line) share one log and the log's order is the order the graph saw. A batch of
    records is written with one ``write`` and made durable with one ``fsync`` (group commit).

    A last line without its newline, or one that is not a record (a crash or a full disk during an
    append), was never synced whole and so never applied: the next writer moves it to
    ``<log>.torn`` and appends a ``torn_tail`` record that says so, and the chain stays whole.

    Args:
        path: the log file (created with its folder if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[LogWriter]:
        """Hold the log for writing: appends through the yielded writer, and whatever the caller
        does with them before leaving, happen as one step for every other writer."""
        with open(self.path, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                writer = LogWriter(handle, self.path)
                writer.set_aside_torn_tail()
                yield writer
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append one record and sync it.

        Args:
            op: what was written (``record``, ``incident``, ``openlineage`` ...).
            data: the write's content (JSON-serialisable).

        Returns:
            The record as written, with ``seq``, ``at`` and ``hash``.
        """
        with self.locked() as writer:
            return writer.append([(op, data)])[0]

    def records_after(self, seq: int) -> list[dict[str, Any]]:
        """The records whose ``seq`` is above ``seq``, in order, read back from the end of the file
        only as far as needed (a caught-up graph reads one line).

        Raises:
            ValueError: a line that is not a record (the log was damaged; see :func:`verify_log`).
        """
        out: list[dict[str, Any]] = []
        for line in _lines_backwards(self.path):
            record = json.loads(line)
            if int(record["seq"]) <= seq:
                break
            out.append(record)
        out.reverse()
        return out

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, in file order."""
        with open(self.path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def export(self, out: Path) -> Verification:
        """Write the log for auditors: one JSON document with the verification result, the head
        hash and count (to keep apart from the log, so a cut tail is found later) and the records.

        Returns:
            The verification of the exported log.
        """
        result = verify_log(self.path)
        records = [json.loads(line) for line in self.path.read_bytes().split(b"\n") if line.strip()]
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
        expect_head: head hash kept from an earlier export (an anchor). The prefix it covers must
            be whole and end at that hash; records appended since are fine and counted in
            ``grown_since_anchor``. A log whose chain does not hold it lost or replaced records.
        expect_records: record count kept with ``expect_head``: the anchor's record must be this one.

    Returns:
        The verification; ``problems`` lists every fault, in file order.
    """
    problems: list[Problem] = []
    prev_hash, prev_seq, count, head = GENESIS, 0, 0, GENESIS
    seen_hashes: dict[str, int] = {}
    # Lines end at "\n" only: a record keeps U+2028, U+0085 and the like as they are, and
    # str.splitlines() would cut it there.
    for line_no, line in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        count += 1
        try:
            record = json.loads(line.decode())
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
    grown = 0
    if expect_head is not None:
        where = seen_hashes.get(expect_head)
        if where is None:
            problems.append(
                Problem(
                    0,
                    None,
                    "truncated",
                    "the anchor's head hash is not in the log: records it covers were removed or replaced",
                )
            )
        elif expect_records is not None and where != expect_records:
            problems.append(
                Problem(
                    0,
                    None,
                    "truncated",
                    f"the anchor's head is record {where}, but the anchor covers {expect_records} records",
                )
            )
        else:
            grown = count - where
    elif expect_records is not None and count < expect_records:
        problems.append(
            Problem(0, None, "truncated", f"the log holds {count} records, expected {expect_records}")
        )
    return Verification(count, head, problems, grown)
