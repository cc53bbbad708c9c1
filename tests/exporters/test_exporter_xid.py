"""The Xid watcher on real files: following appended lines, kmsg records, journald, malformed lines."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetscope.exporters.scrape import ScrapeCollector
from fleetscope.exporters.xid import JOURNAL, KernelLogParser, XidCollector, XidWatcher, journal_files
from tests.exporters.support import KERNEL_LOGS, samples, wait_for

XID79 = b"[ 2154.103102] NVRM: Xid (PCI:0000:3b:00): 79, pid=0, name=python3, GPU has fallen off the bus.\n"


def xid_counts(watcher: XidWatcher, gpu_for_bus_id: object = None) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    # Through ScrapeCollector, as served: a source that is briefly unreadable (rotation) keeps its counts.
    registry.register(ScrapeCollector([XidCollector(watcher, gpu_for_bus_id)]))  # type: ignore[arg-type]
    return {
        (dict(labels)["gpu"], dict(labels)["xid"]): value
        for (name, labels), value in samples(generate_latest(registry).decode()).items()
        if name == "fleetscope_gpu_xid_errors_total"
    }


def test_appended_lines_make_monotonic_counters(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_bytes((KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes())
    watcher = XidWatcher(str(log), poll_interval=0.05).start()
    try:
        wait_for(lambda: watcher.snapshot()[2] == 12)
        first = xid_counts(watcher)
        assert first == {("0000:0a:00.0", "31"): 1, ("0000:0a:00.0", "62"): 1, ("0000:0a:00.0", "45"): 8}
        with log.open("ab") as f:
            f.write(XID79[:40])  # a line written in two pieces is read once, whole
            f.flush()
            time.sleep(0.3)  # several polls see the unfinished line
            f.write(XID79[40:] + (KERNEL_LOGS / "xid31-62-45.dmesg.log").read_bytes().splitlines(True)[3])
        wait_for(lambda: watcher.snapshot()[2] == 14)
        second = xid_counts(watcher)
        assert watcher.snapshot()[2:] == (14, 0)  # 14 lines read, none malformed
        assert second[("0000:3b:00.0", "79")] == 1
        assert second[("0000:0a:00.0", "45")] == 9
        assert all(second[key] >= value for key, value in first.items())
    finally:
        watcher.stop()


def test_rotated_file_is_reopened_and_counts_keep_growing(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_bytes(XID79)
    watcher = XidWatcher(str(log), poll_interval=0.05).start()
    try:
        wait_for(lambda: xid_counts(watcher).get(("0000:3b:00.0", "79")) == 1)
        log.rename(tmp_path / "kern.log.1")
        log.write_bytes(XID79 + XID79)
        wait_for(lambda: xid_counts(watcher).get(("0000:3b:00.0", "79")) == 3)
    finally:
        watcher.stop()


def test_kmsg_records_with_escaped_newlines() -> None:
    parser = KernelLogParser()
    events = parser.feed(
        b"4,1530,1843308145,-;NVRM: The NVIDIA GPU 0000:b3:00.0\\x0aNVRM: (PCI ID: 10de:26b5) installed in "
        b"this system has\\x0aNVRM: fallen off the bus and is not responding to commands.",
        kmsg=True,
    )
    parser.feed(b" SUBSYSTEM=pci", kmsg=True)  # a device property line of the same record
    parser.feed(
        b"3,1531,1843439662,-;NVRM: Xid (PCI:0000:b3:00): 79, pid=1, name=x, GPU has fallen off the bus."
    )
    assert parser.fallen_counts == {"0000:b3:00.0": 1}
    assert parser.xid_counts == {("0000:b3:00.0", 79): 1}
    assert events[0]["kind"] == "fallen_off_bus" and events[0]["uptime_seconds"] == 1843.308145
    assert "\nNVRM: fallen off the bus" in events[0]["message"]
    assert parser.malformed == 0


def test_multiline_dmesg_fallen_off_bus_is_attributed_to_the_named_gpu() -> None:
    parser = KernelLogParser()
    for line in (KERNEL_LOGS / "fallen-off-bus-multiline.dmesg.log").read_bytes().splitlines():
        parser.feed(line)
    assert parser.fallen_counts == {"0000:b3:00.0": 1}
    assert not parser.xid_counts


def test_journald_json_and_export_lines() -> None:
    parser = KernelLogParser()
    message = "NVRM: Xid (PCI:0000:dc:00): 45, pid=1818990, name=python3, Ch 00000001"
    events = parser.feed(
        json.dumps({"MESSAGE": message, "__REALTIME_TIMESTAMP": "1722467658000000"}).encode()
    )
    assert events[0]["time"] == "2024-07-31T23:14:18+00:00"
    # journald writes a message that is not valid UTF-8 as a list of byte values.
    parser.feed(json.dumps({"MESSAGE": list(message.encode())}).encode())
    for line in (
        b"__CURSOR=s=1;i=2",
        b"__REALTIME_TIMESTAMP=1722467658000000",
        b"MESSAGE=" + message.encode(),
        b"",
    ):
        parser.feed(line)
    assert parser.xid_counts == {("0000:dc:00.0", 45): 3}
    assert parser.malformed == 0


def test_malformed_lines_are_counted_and_kept(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_bytes(
        b'{"MESSAGE": "truncated\n'  # cut-off journald JSON
        b"NVRM: Xid (PCI:garbage): oops\n"  # an Xid line without bus id and number
        b"\xff\xfe NVRM: binary junk\n"  # not UTF-8
        b'{"PRIORITY": "3"}\n' + XID79  # JSON without MESSAGE
    )
    watcher = XidWatcher(str(log), poll_interval=0.05).start()
    try:
        wait_for(lambda: watcher.snapshot()[2] == 5)
        assert watcher.snapshot()[3] == 4  # malformed
        kinds = [event["kind"] for event in watcher.events()]
        assert kinds == ["malformed"] * 4 + ["xid"]
        assert xid_counts(watcher) == {("0000:3b:00.0", "79"): 1}  # the good line after them still counts
    finally:
        watcher.stop()


def test_gpu_label_uses_nvml_index_when_known(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_bytes(XID79)
    watcher = XidWatcher(str(log), poll_interval=0.05).start()
    try:
        wait_for(lambda: watcher.snapshot()[2] == 1)
        assert xid_counts(watcher, {"0000:3b:00.0": "2"}.get) == {("2", "79"): 1}
    finally:
        watcher.stop()


def test_missing_source_reports_unavailable_and_recovers(tmp_path: Path) -> None:
    log = tmp_path / "not-yet.log"
    watcher = XidWatcher(str(log), poll_interval=0.05).start()
    try:
        wait_for(lambda: watcher.error is not None and "cannot read" in watcher.error)
        log.write_bytes(XID79)
        wait_for(lambda: watcher.error is None and watcher.snapshot()[2] == 1)
    finally:
        watcher.stop()


def test_kmsg_lines_in_a_followed_file(tmp_path: Path) -> None:
    log = tmp_path / "kmsg.txt"
    log.write_bytes(
        b"6,901,14328198496,-;NVRM: GPU at PCI:0000:0a:00: GPU-00000000-0000-0000-0000-000000000001\n"
        b"3,902,14328198504,-;NVRM: Xid (PCI:0000:0a:00): 31, pid=13332, name=cuda_plot_k32_v, Ch 00000010\n"
    )
    watcher = XidWatcher(str(log), poll_interval=0.05).start()
    try:
        wait_for(lambda: watcher.snapshot()[2] == 2)
        assert xid_counts(watcher) == {("0000:0a:00.0", "31"): 1}
        assert [e["uptime_seconds"] for e in watcher.events()] == [14328.198496, 14328.198504]
    finally:
        watcher.stop()


def test_real_dev_kmsg_is_read() -> None:
    kmsg = Path("/dev/kmsg")
    try:
        kmsg.open("rb").close()
    except OSError as exc:
        pytest.skip(f"/dev/kmsg not readable here: {exc}")
    watcher = XidWatcher(str(kmsg), poll_interval=0.05).start()
    try:
        # Any booted kernel has records in its ring buffer; all of them parse as kmsg records.
        wait_for(lambda: watcher.error is None and watcher.snapshot()[2] > 0)
        assert watcher.snapshot()[3] == 0
        assert all(e["uptime_seconds"] is not None for e in watcher.events())
    finally:
        watcher.stop()


def test_journal_mode_withoutjournal_files_says_it_sees_nothing() -> None:
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl not installed")
    if journal_files():
        pytest.skip("this machine has journal files; the blind case cannot be shown here")
    watcher = XidWatcher(JOURNAL, poll_interval=0.05).start()
    try:
        wait_for(lambda: watcher.error is not None and "no journal files" in watcher.error)
    finally:
        watcher.stop()
