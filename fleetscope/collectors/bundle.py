"""Reading a bundle: one sub-folder per node, cluster-wide files at the top, any file names.

Files are read as byte streams in fixed-size chunks, so a 2 GB log costs a few MB of memory; a line
longer than :data:`MAX_LINE_BYTES` is cut there and counted as truncated. Text is decoded as UTF-8 with
replacement characters, so non-UTF-8 bytes never stop a read, and NUL padding is dropped. A gzip file
(``nvidia-bug-report.log.gz``, a rotated ``kern.log.1.gz``), recognised by its magic bytes, is
decompressed as it is streamed. A file whose first block is mostly control bytes is binary and is
skipped (counted as unparsed).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetscope.collectors.prefilter import KeywordMatcher

#: Longest line kept, in bytes; longer lines are cut here (a 1 MB line is a dump, not a log message).
MAX_LINE_BYTES = 1 << 20
#: Bytes read at a time.
CHUNK_BYTES = 4 << 20
#: Bytes looked at to recognise a file's format and whether it is binary.
HEAD_BYTES = 64 << 10
#: The first bytes of a gzip member (RFC 1952, section 2.3.1).
GZIP_MAGIC = b"\x1f\x8b"
#: What reading a file can raise: I/O errors, and a truncated or corrupt gzip stream.
READ_ERRORS = (OSError, EOFError, zlib.error)


class BundleError(Exception):
    """The bundle path cannot be investigated (missing, not a folder, unreadable)."""


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file of a bundle.

    Attributes:
        path: Absolute path.
        rel: Path relative to the bundle root with ``/`` separators, used in evidence sources.
        node: The node sub-folder it sits in, or ``None`` for a cluster-wide file at the top.
        size: Size in bytes.
    """

    path: Path
    rel: str
    node: str | None
    size: int


@dataclass(slots=True)
class ReadStats:
    """What a read of one file saw.

    Attributes:
        lines: Lines read.
        truncated: Lines cut at :data:`MAX_LINE_BYTES`.
        bytes: Bytes read (decompressed, for gzip).
        on_read: Called with ``bytes`` after each chunk read, if set (a progress bar within one file).
        recognised: Lines a document parser understood without making evidence of them
            (:attr:`fleetscope.collectors.parsers.base.DocumentParser.recognised`).
    """

    lines: int = 0
    truncated: int = 0
    bytes: int = 0
    on_read: Callable[[int], None] | None = None
    recognised: int = 0


def iter_files(root: Path) -> Iterator[BundleFile]:
    """List a bundle's files, node folders first, in a stable order.

    Args:
        root: The bundle folder.

    Yields:
        Every regular file except hidden ones.

    Raises:
        BundleError: ``root`` does not exist or is not a folder.
    """
    if not root.exists():
        raise BundleError(f"bundle not found: {root}")
    if not root.is_dir():
        raise BundleError(f"bundle is not a folder: {root}")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        node = rel_dir.parts[0] if rel_dir.parts else None
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            if not path.is_file():
                continue
            rel = (rel_dir / name).as_posix()
            yield BundleFile(path=path, rel=rel, node=node, size=path.stat().st_size)


def open_bytes(path: Path) -> io.BufferedIOBase:
    """Open a file to read its bytes, decompressing it on the fly when its content is gzip.

    Raises:
        OSError: the file cannot be opened.
    """
    with path.open("rb") as fh:
        compressed = fh.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else path.open("rb")


def read_head(path: Path) -> bytes:
    """Return the first :data:`HEAD_BYTES` of a file (of its decompressed content, for gzip)."""
    with open_bytes(path) as fh:
        return fh.read(HEAD_BYTES)


#: Every byte but the control bytes text logs do not carry (they do carry tab, newline, vertical tab,
#: form feed, carriage return and ESC).
_NOT_BINARY = bytes(b for b in range(256) if b >= 0x20 or b in b"\t\n\x0b\x0c\r\x1b")
#: Share of other control bytes above which a file is binary (text logs have next to none).
_BINARY_CONTROL_SHARE = 0.02


def is_binary(head: bytes) -> bool:
    """Whether a file's first block is binary rather than text.

    NUL bytes alone do not make a file binary: a syslog cut short by a hard crash (often the very
    crash under investigation) is padded with NULs. Other control bytes do, above
    :data:`_BINARY_CONTROL_SHARE` of the rest.
    """
    rest = head.replace(b"\x00", b"")
    if not rest:
        return bool(head)
    controls = len(rest.translate(None, delete=_NOT_BINARY))
    return controls > _BINARY_CONTROL_SHARE * len(rest)


def decode(raw: bytes) -> str:
    """Decode one line as UTF-8, replacing what is not, dropping NUL padding and the line end."""
    return raw.replace(b"\x00", b"").rstrip(b"\r\n").decode("utf-8", errors="replace")


def scan_lines(
    path: Path, stats: ReadStats, prefilter: KeywordMatcher | None = None
) -> Iterator[tuple[int, bytes, tuple[int, ...]]]:
    """Stream a file's lines, optionally only those holding one of the prefilter's keywords.

    With a prefilter the matcher runs over whole chunks in C and only candidate lines are cut out, which
    is what makes a multi-GB log cheap to read.

    Args:
        path: File to read.
        stats: Updated in place with lines, truncated lines and bytes read.
        prefilter: The keyword matcher; ``None`` yields every line.

    Yields:
        ``(line_number, raw_line, tags)``: 1-based line number, the line's bytes without its newline,
        and the tags of the prefilter keywords it holds (``()`` without a prefilter).
    """
    lineno = 0  # lines fully counted before buf[0]
    skipping = False  # inside the tail of an over-long line
    buf = b""
    with open_bytes(path) as fh:
        while True:
            # read1: what one read gives, so a truncated archive yields its lines before it fails.
            chunk = fh.read1(CHUNK_BYTES)
            stats.bytes += len(chunk)
            if stats.on_read is not None:
                stats.on_read(stats.bytes)
            eof = not chunk
            buf += chunk
            if skipping:
                nl = buf.find(b"\n")
                if nl < 0:
                    buf = b""
                    if eof:
                        lineno += 1
                        break
                    continue
                buf = buf[nl + 1 :]
                lineno += 1
                skipping = False
            end = len(buf) if eof else buf.rfind(b"\n") + 1
            if end == 0 and len(buf) > MAX_LINE_BYTES:
                # One line longer than the limit: keep its head, count it, skip to its end.
                line = buf[:MAX_LINE_BYTES]
                stats.truncated += 1
                if prefilter is None:
                    yield lineno + 1, line, ()
                else:
                    hits = prefilter.lines(line)
                    if hits:
                        yield lineno + 1, line, tuple(sorted({t for _, _, tags in hits for t in tags}))
                buf = b""
                skipping = True
                continue
            if end:
                yield from _lines_in(buf, end, lineno, prefilter, stats)
                lineno += buf.count(b"\n", 0, end)
                if eof and end and not buf.endswith(b"\n"):
                    lineno += 1
                buf = buf[end:]
            if eof:
                break
    stats.lines = lineno


def _lines_in(
    buf: bytes, end: int, lineno: int, prefilter: KeywordMatcher | None, stats: ReadStats
) -> Iterator[tuple[int, bytes, tuple[int, ...]]]:
    if prefilter is None:
        start = 0
        n = lineno
        while start < end:
            nl = buf.find(b"\n", start, end)
            stop = end if nl < 0 else nl
            n += 1
            line = buf[start:stop]
            if len(line) > MAX_LINE_BYTES:
                stats.truncated += 1
                line = line[:MAX_LINE_BYTES]
            yield n, line, ()
            start = stop + 1
        return
    counted_to = 0
    n = lineno
    for start, stop, tags in prefilter.lines(buf, end):
        n += buf.count(b"\n", counted_to, start) + 1
        counted_to = stop + 1
        line = buf[start:stop]
        if len(line) > MAX_LINE_BYTES:
            stats.truncated += 1
            line = line[:MAX_LINE_BYTES]
        yield n, line, tags
