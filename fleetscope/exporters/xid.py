"""Xid watcher: counts NVIDIA Xid errors and "fallen off the bus" reports from the kernel log.

A background thread follows one kernel-log source and feeds each line to :class:`KernelLogParser`:

* ``/dev/kmsg`` (any character device): one record per ``read()``, ``pri,seq,usec,flags;message``
  (Documentation/ABI/testing/dev-kmsg); ``\\xNN`` escapes are undone, continuation lines (`` KEY=value``
  device properties) are skipped. Reading starts at the oldest record the kernel still holds.
* ``journal``: runs ``journalctl -k -o json --follow --lines=all`` and reads its JSON lines.
* any other path: a file followed like ``tail -F`` from its first byte (reopened when it is rotated or
  truncated). Lines may be plain ``dmesg``/syslog text, ``/dev/kmsg`` records, ``journalctl -o json``
  or ``journalctl -o export`` text fields, in any mix: the format is recognised per line.

The driver's Xid line is ``NVRM: Xid (PCI:0000:3b:00): 79, pid=..., name=..., <text>`` (NVIDIA's Xid
catalogue, docs.nvidia.com/deploy/xid-errors). "Fallen off the bus" is also reported without an Xid,
over several lines (``NVRM: The NVIDIA GPU 0000:b3:00.0`` / ``... installed in this system has`` /
``... fallen off the bus and is not responding to commands.``); the parser remembers the GPU named in
the lines just before.

Every message read also goes into a bounded ring buffer (``events_buffer_size``, oldest dropped first)
that ``/events`` serves with the raw line, so the correlation service sees PCIe AER, OOM or hung-task
lines next to the Xids; the counters never lose an event, the buffer may.

Label choice for ``gpu``: the NVML index when NVML maps the PCI bus id to a GPU (so the series joins
with the GPU collector's), else the canonical bus id ``0000:3b:00.0``. Both are bounded by the number of
PCI functions on the node; a bus id label only appears for a GPU NVML cannot see, which is exactly the
GPU that has fallen off the bus.

Counters are true monotonic counters (dcgm-exporter's ``DCGM_FI_DEV_XID_ERRORS`` is a last-value gauge
that loses repeats). Because every source is read from its oldest line, a restarted exporter counts the
same lines again and its counters come back at the values they had, so ``increase()`` shows no false
Xids after a restart; only when the kernel ring buffer has wrapped (or the file was rotated) do they
restart lower, which Prometheus treats as an ordinary counter reset.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import re
import select
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric

from fleetscope.exporters.metrics import MetricSpec, add
from fleetscope.exporters.pci import canonical_pci_bus_id
from fleetscope.exporters.registry import BuildContext, Setting, register
from fleetscope.exporters.scrape import SourceUnavailable
from fleetscope.formats import FALLEN_OFF_BUS as FALLEN_WORDS
from fleetscope.formats import GPU_NAMED, KMSG_RECORD, XID_MENTION, parse_xid

log = logging.getLogger(__name__)

JOURNAL = "journal"
"""The ``--collector.xid.kernel-log`` value that reads the kernel log through ``journalctl``."""
JOURNAL_DIRS = ("/var/log/journal", "/run/log/journal")
"""Where systemd-journald keeps its files (persistent, then volatile storage)."""


def journal_files(dirs: tuple[str, ...] = JOURNAL_DIRS) -> bool:
    """Whether journald has written any journal file, which ``journalctl`` needs to show anything."""
    return any(name.endswith(".journal") for d in dirs for _, _, names in os.walk(d) for name in names)


MAX_LINE_BYTES = 64 * 1024
# How many lines after "The NVIDIA GPU <bus id>" a bare "fallen off the bus" is still about that GPU.
_ANNOUNCE_WINDOW = 4

_EXPORT_FIELD = re.compile(r"(?P<key>[A-Z_][A-Z0-9_]*)=(?P<value>.*)", re.DOTALL)
_UPTIME = re.compile(r"\[\s*(?P<seconds>\d+\.\d+)\]")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")

XID_ERRORS = MetricSpec(
    "fleetscope_gpu_xid_errors_total",
    "counter",
    "NVIDIA Xid errors seen in the kernel log (NVRM: Xid lines), by GPU (NVML index, or PCI bus id when "
    "NVML cannot see it) and Xid number.",
    "kernel log: NVRM: Xid (PCI:...): N",
    labels=("gpu", "xid"),
)
FALLEN_OFF_BUS = MetricSpec(
    "fleetscope_gpu_fallen_off_bus_total",
    "counter",
    "Kernel-log reports that a GPU has fallen off the bus outside an Xid line "
    "(NVRM: ... fallen off the bus).",
    "kernel log: NVRM: ... fallen off the bus",
    labels=("gpu",),
)
LINES = MetricSpec(
    "fleetscope_kernel_log_lines_total",
    "counter",
    "Kernel-log lines the Xid watcher has read.",
    "kernel log",
)
MALFORMED = MetricSpec(
    "fleetscope_kernel_log_malformed_lines_total",
    "counter",
    "Kernel-log lines the Xid watcher could not parse (bad kmsg or JSON record, unparsable Xid line, "
    "invalid UTF-8, over 64 KiB); they are kept in /events.",
    "kernel log",
)
METRICS = (XID_ERRORS, FALLEN_OFF_BUS, LINES, MALFORMED)


@dataclass(frozen=True)
class KernelRecord:
    """One kernel-log message with whatever time its format carried.

    Attributes:
        message: The message text, escapes undone.
        uptime_seconds: Seconds since boot (kmsg ``usec``, dmesg ``[  12.3]``), if given.
        time: UTC time in ISO 8601 (journald ``__REALTIME_TIMESTAMP``), if given.
    """

    message: str
    uptime_seconds: float | None = None
    time: str | None = None


class MalformedLine(ValueError):
    """A kernel-log line in a recognised format whose content cannot be read."""


def _from_usec(value: Any) -> str:
    return dt.datetime.fromtimestamp(int(value) / 1e6, dt.UTC).isoformat()


class KernelLogParser:
    """Turns kernel-log lines into events and counts; one parser per source (it keeps line context).

    Not thread-safe: the watcher thread owns it; readers use :meth:`XidWatcher.snapshot`.
    """

    def __init__(self) -> None:
        self.xid_counts: collections.Counter[tuple[str, int]] = collections.Counter()
        self.fallen_counts: collections.Counter[str] = collections.Counter()
        self.lines = 0
        self.malformed = 0
        self._export_time: str | None = None
        self._announced: tuple[str, int] | None = None  # (bus id, line number) of the last "GPU <bus id>"

    def feed(self, raw: bytes, kmsg: bool = False) -> list[dict[str, Any]]:
        """Parse one line (without its newline) and update the counters.

        Args:
            raw: The line's bytes.
            kmsg: The line came from a ``/dev/kmsg`` read, where indented lines are device properties.

        Returns:
            Events for ``/events``: one per message (none for blank lines, journald fields other than
            ``MESSAGE`` and kmsg property lines), each a JSON-ready dict: ``kind`` (``xid``,
            ``fallen_off_bus``, ``nvrm`` for other driver messages, ``kernel`` for the rest,
            ``malformed``), ``raw`` (the line as read), ``message`` (its text, escapes undone), ``xid``,
            ``pci_bus_id``, ``uptime_seconds``, ``time``; malformed lines carry ``error`` instead.
        """
        self.lines += 1
        if kmsg and raw[:1] == b" ":
            return []
        try:
            if len(raw) > MAX_LINE_BYTES:
                raise MalformedLine(f"line longer than {MAX_LINE_BYTES} bytes")
            try:
                text = raw.decode()
            except UnicodeDecodeError as exc:
                raise MalformedLine(f"invalid UTF-8: {exc}") from None
            record = self._record(text.rstrip("\r"))
            return [{**e, "raw": text} for e in self._events(record)] if record is not None else []
        except MalformedLine as exc:
            self.malformed += 1
            return [
                {"kind": "malformed", "raw": raw[:MAX_LINE_BYTES].decode(errors="replace"), "error": str(exc)}
            ]

    def _record(self, text: str) -> KernelRecord | None:
        if text.startswith("{"):
            return self._json(text)
        if (m := KMSG_RECORD.fullmatch(text)) is not None:
            message = _ESCAPE.sub(lambda e: chr(int(e[1], 16)), m["msg"])
            return KernelRecord(message, uptime_seconds=int(m["usec"]) / 1e6)
        if (m := _EXPORT_FIELD.fullmatch(text)) is not None:
            if m["key"] == "__REALTIME_TIMESTAMP":
                self._export_time = _from_usec(m["value"]) if m["value"].isdigit() else None
            if m["key"] != "MESSAGE":
                return None
            record = KernelRecord(m["value"], time=self._export_time)
            self._export_time = None
            return record
        if not text.strip():
            self._export_time = None  # a blank line ends a journald export entry
            return None
        uptime = _UPTIME.match(text)
        return KernelRecord(text, uptime_seconds=float(uptime["seconds"]) if uptime else None)

    @staticmethod
    def _json(text: str) -> KernelRecord:
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MalformedLine(f"invalid JSON: {exc}") from None
        message = entry.get("MESSAGE") if isinstance(entry, dict) else None
        if isinstance(message, list):  # journald writes non-UTF-8 messages as a list of byte values
            message = bytes(b & 0xFF for b in message if isinstance(b, int)).decode(errors="replace")
        if not isinstance(message, str):
            raise MalformedLine("JSON record without a MESSAGE string")
        realtime = entry.get("__REALTIME_TIMESTAMP")
        monotonic = entry.get("_SOURCE_MONOTONIC_TIMESTAMP")
        return KernelRecord(
            message,
            uptime_seconds=int(monotonic) / 1e6 if str(monotonic).isdigit() else None,
            time=_from_usec(realtime) if str(realtime).isdigit() else None,
        )

    def _events(self, record: KernelRecord) -> list[dict[str, Any]]:
        base = {"message": record.message, "uptime_seconds": record.uptime_seconds, "time": record.time}
        if "NVRM" not in record.message and not FALLEN_WORDS.search(record.message):
            # Kept for /events too: the correlation service reads PCIe AER, OOM and hung-task lines there.
            return [{**base, "kind": "kernel", "xid": None, "pci_bus_id": None}]
        xid = parse_xid(record.message)
        if xid is not None and xid.bus_id is not None:
            self.xid_counts[(xid.bus_id, xid.xid)] += 1
            return [{**base, "kind": "xid", "xid": xid.xid, "pci_bus_id": xid.bus_id}]
        if XID_MENTION.search(record.message):
            raise MalformedLine("NVRM Xid line without a PCI bus id and Xid number")
        named = GPU_NAMED.search(record.message)
        if named is not None:
            self._announced = (canonical_pci_bus_id(named["pci"]) or named["pci"], self.lines)
        recent = self._announced
        bus_id = recent[0] if recent is not None and self.lines - recent[1] <= _ANNOUNCE_WINDOW else None
        if FALLEN_WORDS.search(record.message):
            if bus_id is not None:
                self.fallen_counts[bus_id] += 1
            self._announced = None
            return [{**base, "kind": "fallen_off_bus", "xid": None, "pci_bus_id": bus_id}]
        return [{**base, "kind": "nvrm", "xid": None, "pci_bus_id": bus_id if named else None}]


class XidWatcher:
    """Follows one kernel-log source in a daemon thread and keeps counts and recent events.

    Args:
        kernel_log: ``/dev/kmsg`` (or another character device), :data:`JOURNAL`, or a file path.
        events_size: How many recent events ``/events`` keeps (a ring buffer).
        poll_interval: Seconds between looks at a file that has no new data, and between retries of
            a source that cannot be opened.
    """

    def __init__(
        self, kernel_log: str = "/dev/kmsg", events_size: int = 1000, poll_interval: float = 0.5
    ) -> None:
        self.kernel_log = kernel_log
        self._poll = poll_interval
        self._parser = KernelLogParser()
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=events_size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = "not started"

    def start(self) -> XidWatcher:
        """Start following the source in a daemon thread; returns ``self``."""
        self._thread = threading.Thread(target=self._run, name="xid-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> tuple[dict[tuple[str, int], int], dict[str, int], int, int]:
        """Return copies of the counts.

        Returns:
            (Xid counts by (bus id, xid), fallen-off-bus counts by bus id, lines read, malformed lines).
        """
        with self._lock:
            p = self._parser
            return dict(p.xid_counts), dict(p.fallen_counts), p.lines, p.malformed

    def events(self) -> list[dict[str, Any]]:
        """Return the recent events, oldest first (JSON-ready dicts, see :meth:`KernelLogParser.feed`)."""
        with self._lock:
            return list(self._events)

    def _feed(self, line: bytes, origin: str, kmsg: bool = False) -> None:
        received = dt.datetime.now(dt.UTC).isoformat()
        with self._lock:
            for event in self._parser.feed(line, kmsg=kmsg):
                self._events.append({**event, "source": origin, "received_at": received})

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.kernel_log == JOURNAL:
                    self._follow_journal()
                elif stat.S_ISCHR(os.stat(self.kernel_log).st_mode):
                    self._follow_kmsg()
                else:
                    self._follow_file()
            except OSError as exc:
                self._set_error(f"cannot read kernel log {self.kernel_log}: {exc}")
            except Exception:
                log.exception("Xid watcher failed on %s; retrying", self.kernel_log)
                self._set_error(f"Xid watcher failed on {self.kernel_log}")
            self._stop.wait(self._poll)

    def _set_error(self, error: str | None) -> None:
        if error != self.error:
            if error is None:
                log.info("reading kernel log %s", self.kernel_log)
            else:
                log.warning("%s", error)
        self.error = error

    def _follow_kmsg(self) -> None:
        fd = os.open(self.kernel_log, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self._set_error(None)
            while not self._stop.is_set():
                try:
                    record = os.read(fd, 16384)  # one record per read; 16 KiB > the kernel's record limit
                except BlockingIOError:
                    select.select([fd], [], [], self._poll)
                    continue
                except BrokenPipeError:
                    continue  # records were overwritten before we read them; the next read resumes
                for line in record.rstrip(b"\n").split(b"\n"):
                    self._feed(line, self.kernel_log, kmsg=True)
        finally:
            os.close(fd)

    def _follow_journal(self) -> None:
        command = ["journalctl", "-k", "-o", "json", "--follow", "--lines=all", "--no-pager"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            # journalctl follows an empty journal without a word: say so, or the watcher is blind unseen.
            self._set_error(
                None
                if journal_files()
                else f"journalctl finds no journal files in {' or '.join(JOURNAL_DIRS)}: "
                "is systemd-journald running and storing the kernel log?"
            )
            try:
                while not self._stop.is_set():
                    ready, _, _ = select.select([proc.stdout], [], [], self._poll)
                    if not ready:
                        continue
                    line = proc.stdout.readline()
                    if not line:
                        break
                    self._set_error(None)
                    self._feed(line.rstrip(b"\n"), JOURNAL)
            finally:
                proc.kill()
        self._set_error(f"journalctl exited with status {proc.returncode}")

    def _follow_file(self) -> None:
        with open(self.kernel_log, "rb") as f:
            self._set_error(None)
            inode, number, partial = os.fstat(f.fileno()).st_ino, 0, b""
            while not self._stop.is_set():
                chunk = f.read(1 << 16)
                if chunk:
                    lines = (partial + chunk).split(b"\n")
                    partial = lines.pop()
                    for line in lines:
                        number += 1
                        self._feed(line, f"{self.kernel_log}:{number}")
                    continue
                try:
                    current = os.stat(self.kernel_log)
                except FileNotFoundError:
                    current = None
                if current is None or current.st_ino != inode or current.st_size < f.tell():
                    return  # rotated, removed or truncated: _run reopens it from its first byte
                self._stop.wait(self._poll)


class XidCollector:
    """Prometheus collector for the counters an :class:`XidWatcher` keeps.

    Args:
        watcher: The running watcher.
        gpu_for_bus_id: Maps a canonical PCI bus id to a GPU label (the NVML index), or ``None`` if
            unknown; the GPU collector's :meth:`~fleetscope.exporters.gpu.GpuCollector.gpu_for_bus_id`.
    """

    name = "xid"
    from_memory = True  # collect() copies what the watcher thread counted

    def __init__(
        self, watcher: XidWatcher, gpu_for_bus_id: Callable[[str], str | None] | None = None
    ) -> None:
        self.watcher = watcher
        self._gpu_for_bus_id = gpu_for_bus_id or (lambda bus_id: None)

    def collect(self) -> Iterator[Metric]:
        """Yield the Xid and kernel-log counters.

        Raises:
            SourceUnavailable: The kernel log cannot be read now (after yielding the counts so far).
        """
        xids, fallen, lines, malformed = self.watcher.snapshot()
        xid_family, fallen_family = XID_ERRORS.family(), FALLEN_OFF_BUS.family()
        for (bus_id, xid), count in sorted(xids.items()):
            add(xid_family, [self._label(bus_id), str(xid)], float(count))
        for bus_id, count in sorted(fallen.items()):
            add(fallen_family, [self._label(bus_id)], float(count))
        lines_family, malformed_family = LINES.family(), MALFORMED.family()
        add(lines_family, [], float(lines))
        add(malformed_family, [], float(malformed))
        yield from (xid_family, fallen_family, lines_family, malformed_family)
        if self.watcher.error is not None:
            raise SourceUnavailable(self.watcher.error)

    def _label(self, bus_id: str) -> str:
        return self._gpu_for_bus_id(bus_id) or bus_id

    def start(self) -> None:
        """Start following the kernel log (the server calls this once it serves)."""
        self.watcher.start()

    def close(self) -> None:
        """Stop following the kernel log."""
        self.watcher.stop()


@register(
    "xid",
    'Xid errors and "fallen off the bus" from the kernel log.',
    settings=(
        Setting(
            "kernel_log",
            str,
            "/dev/kmsg",
            "Kernel log to watch: /dev/kmsg, 'journal' (journalctl -k), or a file followed like tail -F "
            "(dmesg, syslog, kmsg or journalctl json/export lines).",
            metavar="PATH",
        ),
    ),
    needs=("gpu",),
)
def _build(ctx: BuildContext) -> XidCollector:
    gpu = ctx.built.get("gpu")
    watcher = XidWatcher(ctx.setting("kernel_log"), events_size=ctx.config.events_buffer_size)
    return XidCollector(watcher, gpu.gpu_for_bus_id if gpu is not None else None)
