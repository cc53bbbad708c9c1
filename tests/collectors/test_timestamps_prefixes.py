"""Timestamp forms and launcher prefixes, on lines taken from the incident cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetscope.collectors.prefixes import split_prefixes
from fleetscope.collectors.timestamps import split_timestamp, with_year


@pytest.mark.parametrize(
    ("line", "raw", "when", "rest"),
    [
        (
            "[Fri Aug 30 11:43:09 2024] NVRM: Xid (PCI:0000:cb:00): 13",
            "[Fri Aug 30 11:43:09 2024]",
            datetime(2024, 8, 30, 11, 43, 9, tzinfo=UTC),
            "NVRM: Xid (PCI:0000:cb:00): 13",
        ),
        (
            "[Mon Aug  5 03:54:13 2024] NVRM: GPU at",
            "[Mon Aug  5 03:54:13 2024]",
            datetime(2024, 8, 5, 3, 54, 13, tzinfo=UTC),
            "NVRM: GPU at",
        ),
        (
            "2015-11-21 05:54:18,834: Iteration took 32.709 s.",
            "2015-11-21 05:54:18,834",
            datetime(2015, 11, 21, 5, 54, 18, 834000, tzinfo=UTC),
            "Iteration took 32.709 s.",
        ),
        (
            "[2024-11-06 21:47:38] terminate called",
            "[2024-11-06 21:47:38]",
            datetime(2024, 11, 6, 21, 47, 38, tzinfo=UTC),
            "terminate called",
        ),
        (
            "2024-02-08T09:10:37.900+02:00 node-01 kernel: NVRM: x",
            "2024-02-08T09:10:37.900+02:00",
            datetime(2024, 2, 8, 7, 10, 37, 900000, tzinfo=UTC),
            "kernel: NVRM: x",
        ),
    ],
)
def test_dated_forms(line: str, raw: str, when: datetime, rest: str) -> None:
    stamp, body = split_timestamp(line)
    assert stamp is not None
    assert (stamp.raw, stamp.time, body) == (raw, when, rest)


def test_kernel_uptime_keeps_seconds_since_boot() -> None:
    stamp, body = split_timestamp("[221684.337896] NVRM: Xid (PCI:0000:5d:00): 119, pid=3318842")
    assert stamp is not None and stamp.time is None
    assert stamp.uptime == pytest.approx(221684.337896)
    assert body.startswith("NVRM: Xid")


def test_dmesg_human_delta_is_relative() -> None:
    stamp, body = split_timestamp("[  +0.000844] nvidia 0000:03:00.0: AER: can't recover")
    assert stamp is not None and (stamp.raw, stamp.time, stamp.uptime) == ("[  +0.000844]", None, None)
    assert body.startswith("nvidia 0000:03:00.0")


def test_syslog_is_yearless_until_the_bundle_names_a_year() -> None:
    stamp, body = split_timestamp(
        "Nov  4 07:41:24 node-01 kernel: NVRM: loading NVIDIA UNIX x86_64 Kernel Module"
    )
    assert stamp is not None and stamp.yearless and stamp.time is None
    assert (stamp.host, body[:12]) == ("node-01", "kernel: NVRM")
    assert with_year(stamp, 2024) == datetime(2024, 11, 4, 7, 41, 24, tzinfo=UTC)


def test_glog_bracketed_c10d_form() -> None:
    stamp, body = split_timestamp("[E1106 21:47:38.123456 12345 ProcessGroupNCCL.cpp:1535] [Rank 3] Watchdog")
    assert stamp is not None and stamp.yearless
    assert with_year(stamp, 2024) == datetime(2024, 11, 6, 21, 47, 38, 123456, tzinfo=UTC)
    assert body == "[Rank 3] Watchdog"


def test_clock_only_and_none() -> None:
    stamp, body = split_timestamp("[15:58:29] WARNING  Sending process 197 closing signal SIGTERM")
    assert stamp is not None and stamp.time is None and body.startswith("WARNING")
    assert split_timestamp("RuntimeError: CUDA error: no kernel image")[0] is None
    # c10d's "[E ProcessGroupNCCL.cpp:455]" is a level tag, not a time.
    assert split_timestamp("[E ProcessGroupNCCL.cpp:455] Some NCCL operations have failed")[0] is None


@pytest.mark.parametrize(
    ("line", "rank", "host", "body"),
    [
        (
            "[1,13]<stdout>:node-02:35:89 [5] ofi_process_cq:1039 NCCL WARN NET/OFI x",
            13,
            None,
            "node-02:35:89 [5] ofi_process_cq:1039 NCCL WARN NET/OFI x",
        ),
        (
            "[1,13]<stderr>:libfabric:35:1668017255::efa:cq:f():243<warn> e",
            13,
            None,
            "libfabric:35:1668017255::efa:cq:f():243<warn> e",
        ),
        (
            '[rank0]:   File "/home/user/sft/sft.py", line 67, in <module>',
            0,
            None,
            '  File "/home/user/sft/sft.py", line 67, in <module>',
        ),  # traceback indentation kept
        (
            "[default3]:[2024-11-06 21:47:38] torch.OutOfMemoryError: CUDA out of memory.",
            3,
            None,
            "torch.OutOfMemoryError: CUDA out of memory.",
        ),
        ("[2024-11-06 21:47:38] [rank7]: terminate called", 7, None, "terminate called"),
        (
            "  12: NCCL WARN NET/IB : Got completion with error 12",
            12,
            None,
            "NCCL WARN NET/IB : Got completion with error 12",
        ),
        (
            "node-02: [ 1843.308145] NVRM: Xid (PCI:0000:b3:00): 79",
            None,
            "node-02",
            "NVRM: Xid (PCI:0000:b3:00): 79",
        ),
        (
            "RuntimeError: DataLoader worker (pid 47) is killed by signal: Bus error.",
            None,
            None,
            "RuntimeError: DataLoader worker (pid 47) is killed by signal: Bus error.",
        ),
        (
            "modprobe: FATAL: Module nvidia not found.",
            None,
            None,
            "modprobe: FATAL: Module nvidia not found.",
        ),
    ],
)
def test_launcher_prefixes(line: str, rank: int | None, host: str | None, body: str) -> None:
    pre = split_prefixes(line)
    assert (pre.rank, pre.host, pre.body) == (rank, host, body)
