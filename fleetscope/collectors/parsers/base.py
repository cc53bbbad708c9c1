"""The parser plug-in contract.

A parser recognises one family of formats **from content** (never from a file name) and turns what it
recognises into :class:`~fleetscope.collectors.evidence.Evidence`. There are two kinds:

* :class:`LineParser` — for logs, where any line may hold a message of the family (kernel log, NCCL,
  PyTorch, libfabric ...). Subclass it, set ``name`` and ``keywords`` (literal substrings; a line reaches
  :meth:`LineParser.feed` only if it contains one of them, which is what keeps a 2 GB log cheap: the
  bundle reader runs one multi-pattern matcher, :mod:`fleetscope.collectors.prefilter`, over whole chunks
  and hands over only candidate lines), and implement ``feed`` (and ``finish`` if the parser keeps state
  across lines). One instance is made per file, so instance state is per-file state. A keyword is only a
  hint: ``feed`` must check its own patterns. Reject a line from ``line.text`` where you can before
  touching ``line.pre``, whose prefix split costs more than the match.
* :class:`DocumentParser` — for files that are one structured document (``nvidia-smi -q``, Prometheus
  text). Subclass it, implement the class method :meth:`DocumentParser.sniff` (given the file's first
  64 KB as text, say whether this is your format) and :meth:`DocumentParser.parse` (given every line).
  The first document parser whose ``sniff`` says yes owns the whole file; otherwise the file is a log.
  If ``parse`` raises, the reader calls it again on the same instance with the lines after the one it
  failed on, so keep state that must survive (a header, sections read so far) on the instance.

Register a parser by adding its class to ``LINE_PARSERS`` or ``DOCUMENT_PARSERS`` in
:mod:`fleetscope.collectors.parsers`, and each kind of evidence it makes in
:mod:`fleetscope.collectors.kinds` (evidence that does not match its kind's entry is dropped and counted).
A parser must not raise on odd input: a line it cannot read is simply not evidence (the reader counts it
as unparsed); if it raises anyway, that line is lost and counted, never the rest of the file. Parsers
never decide causes; detectors do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.prefixes import Prefixes, split_prefixes


class Line:
    """One decoded line handed to a parser.

    Attributes:
        number: 1-based line number in its file.
        text: The whole line as read.
        pre: Its launcher prefixes, timestamp and body (``pre.body`` is what a parser matches); split
            from ``text`` on first use unless given, so a parser that rejects a line from ``text`` alone
            costs no prefix parsing.
    """

    __slots__ = ("_pre", "number", "text")

    def __init__(self, number: int, text: str, pre: Prefixes | None = None) -> None:
        self.number = number
        self.text = text
        self._pre = pre

    @property
    def pre(self) -> Prefixes:
        if self._pre is None:
            self._pre = split_prefixes(self.text)
        return self._pre

    def __repr__(self) -> str:
        return f"Line({self.number}, {self.text!r})"


@dataclass(frozen=True, slots=True)
class FileContext:
    """Where a parser's lines come from.

    Attributes:
        rel: File path relative to the bundle root.
        node: The node folder, or ``None`` for a cluster-wide file.
    """

    rel: str
    node: str | None

    def evidence(self, line: Line, kind: str, **fields: Any) -> Evidence:
        """Build evidence for ``line`` with its source, node and time filled in.

        Args:
            line: The line the evidence comes from.
            kind: Evidence kind.
            **fields: Any other :class:`Evidence` field (``gpu``, ``layer``, ``severity``, ``attrs`` ...).
        """
        stamp = line.pre.stamp
        fields.setdefault("node", self.node or line.pre.host)
        attrs = fields.setdefault("attrs", {})
        if line.pre.rank is not None:
            attrs.setdefault("rank", line.pre.rank)
        if stamp is not None and stamp.uptime is not None:
            attrs.setdefault("uptime_s", stamp.uptime)
        return Evidence(
            kind=kind,
            text=line.text.strip()[:1000],
            source=f"{self.rel}:{line.number}",
            time=stamp.time if stamp else None,
            time_raw=stamp.raw if stamp else None,
            **fields,
        )


class LineParser:
    """Base of parsers that pick messages out of logs (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    keywords: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx

    def feed(self, line: Line) -> Iterable[Evidence]:
        """Return the evidence in one candidate line (one that holds one of ``keywords``)."""
        raise NotImplementedError

    def finish(self) -> Iterable[Evidence]:
        """Return evidence held back until the end of the file (multi-line messages, series)."""
        return ()


class DocumentParser:
    """Base of parsers that own a whole structured file (see the module docstring for the contract)."""

    name: ClassVar[str] = ""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        #: Lines understood that gave no evidence (a recognised series no detector reads); the reader
        #: counts them as understood.
        self.recognised = 0

    @classmethod
    def sniff(cls, head: str) -> bool:
        """Say whether a file whose first 64 KB are ``head`` is this parser's format."""
        raise NotImplementedError

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        """Yield the evidence in the whole file, given every line in order."""
        raise NotImplementedError
