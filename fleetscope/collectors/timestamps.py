"""Timestamps in every form a GPU cluster's logs use, kept as written and parsed to UTC.

Forms, each anchored at the start of a line (after launcher prefixes are removed):

============================  =====================================  ==========================
form                          example                                parsed to
============================  =====================================  ==========================
kernel uptime (``dmesg``)     ``[12345.678901]``                     ``uptime`` seconds
``dmesg -H``/``-d`` deltas    ``[  +0.000844]``                      nothing (relative)
``/dev/kmsg`` record          ``6,1234,12345678,-;``                 ``uptime`` seconds
``dmesg -T``                  ``[Mon Jan  2 03:04:05 2024]``         UTC time
ISO-8601 / RFC 3339           ``2024-01-02T03:04:05.123Z``           UTC time
Python logging                ``2024-01-02 03:04:05,123``            UTC time
bracketed ISO                 ``[2024-11-06 21:47:38]``              UTC time
syslog / journald             ``Jan 02 03:04:05 host kernel:``       time once the year is known
glog (NCCL, c10d, TF)         ``I0102 03:04:05.123456  1234 f.cc:1]`` time once the year is known
clock only                    ``[15:58:29]``                         nothing (no date)
============================  =====================================  ==========================

Times without a zone are taken as UTC: bundles do not record the collecting host's zone. Year-less forms
get their year from :func:`with_year` once the bundle's other timestamps have named one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from fleetscope.formats import KMSG_RECORD

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}

_UPTIME = re.compile(r"\[\s*(\d+\.\d+)\]\s?")
_DELTA = re.compile(r"\[\s*[+<]\s*\d+\.\d+>?\]\s?")
_DMESG_T = re.compile(
    r"\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\]\s?"
)
_ISO = re.compile(
    r"\[?(\d{4})-(\d\d)-(\d\d)(?:T| {1,2})(\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?"
    r"\s?(Z|[+-]\d\d:?\d\d|UTC)?\]?:?\s?"
)
_SYSLOG = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? ")
_GLOG = re.compile(r"\[?[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,9})\s+\d+\s+[^\]\s]+\]\s?")
# /dev/kmsg records (``dmesg -r`` raw, ``cat /dev/kmsg``): fleetscope.formats.kmsg's grammar.
_CLOCK = re.compile(r"\[(\d\d:\d\d:\d\d(?:[.,]\d+)?)\]\s?")
# After a syslog or ISO stamp: "host tag[pid]: " (journald short and short-iso output).
_HOST_TAG = re.compile(r"([A-Za-z0-9][\w.-]*) (?=[\w./-]+(?:\[\d+\])?: )")


@dataclass(frozen=True, slots=True)
class Stamp:
    """A timestamp as written and as parsed.

    Attributes:
        raw: The text of the timestamp as written (without surrounding spaces).
        time: UTC time, or ``None`` (uptime, relative, clock-only, or year not yet known).
        uptime: Seconds since boot for the kernel's ``[12345.678901]`` form, else ``None``.
        host: Host named by a syslog/journald line, else ``None``.
        yearless: ``True`` for syslog and glog forms, which omit the year.
    """

    raw: str
    time: datetime | None = None
    uptime: float | None = None
    host: str | None = None
    yearless: bool = False


def _micro(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


def _zone(text: str | None) -> timezone:
    if not text or text in ("Z", "UTC"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def _safe(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0, tz: timezone = UTC
) -> datetime | None:
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except ValueError:
        return None


def split_timestamp(line: str) -> tuple[Stamp | None, str]:
    """Read a timestamp at the start of ``line``.

    Args:
        line: One log line, launcher prefixes already removed.

    Returns:
        ``(stamp, rest)``: the stamp (``None`` if the line starts with none) and the line after it.
    """
    text = line.lstrip()
    if not text:
        return None, line
    first = text[0]
    if first == "[":
        m = _UPTIME.match(text)
        if m:
            return Stamp(raw=m.group(0).strip(), uptime=float(m.group(1))), text[m.end() :]
        m = _DELTA.match(text)
        if m:
            return Stamp(raw=m.group(0).strip()), text[m.end() :]
        m = _DMESG_T.match(text)
        if m and m.group(1) in _MONTHS:
            mon, day, hh, mm, ss, year = m.groups()
            when = _safe(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss))
            return Stamp(raw=m.group(0).strip(), time=when), text[m.end() :]
        m = _CLOCK.match(text)
        if m:
            return Stamp(raw=m.group(0).strip()), text[m.end() :]
    if first.isdigit():
        m = KMSG_RECORD.match(text)
        if m:
            return Stamp(raw=text[: m.start("msg")], uptime=int(m["usec"]) / 1e6), m["msg"]
    if first.isdigit() or first == "[":
        m = _ISO.match(text)
        if m:
            y, mo, d, hh, mi, ss, frac, tz = m.groups()
            when = _safe(int(y), int(mo), int(d), int(hh), int(mi), int(ss), _micro(frac), tz=_zone(tz))
            rest = text[m.end() :]
            host = _HOST_TAG.match(rest)
            if host:
                rest = rest[host.end() :]
            raw = m.group(0).strip().rstrip(":")
            return Stamp(raw=raw, time=when, host=host.group(1) if host else None), rest
    if first in "IWEF[":
        m = _GLOG.match(text)
        if m:
            return Stamp(raw=m.group(0).strip(), yearless=True), text[m.end() :]
    if first.isupper():
        m = _SYSLOG.match(text)
        if m and m.group(1) in _MONTHS:
            rest = text[m.end() :]
            host = _HOST_TAG.match(rest)
            if host:
                rest = rest[host.end() :]
            raw = m.group(0).strip()
            return Stamp(raw=raw, host=host.group(1) if host else None, yearless=True), rest
    return None, line


def with_year(stamp: Stamp, year: int) -> datetime | None:
    """Parse a year-less syslog or glog stamp, given the year the bundle's other timestamps name.

    Args:
        stamp: A stamp with ``yearless`` set.
        year: The year to assume.

    Returns:
        The UTC time, or ``None`` if ``stamp`` is not year-less or names an impossible date.
    """
    if not stamp.yearless:
        return stamp.time
    m = _SYSLOG.match(stamp.raw + " ")
    if m and m.group(1) in _MONTHS:
        mon, day, hh, mm, ss, frac = m.groups()
        return _safe(year, _MONTHS[mon], int(day), int(hh), int(mm), int(ss), _micro(frac))
    m = _GLOG.match(stamp.raw + " ")
    if m:
        mo, day, hh, mm, ss, frac = m.groups()
        return _safe(year, int(mo), int(day), int(hh), int(mm), int(ss), _micro(frac))
    return None
