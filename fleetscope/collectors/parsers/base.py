"""The parser plug-in contract.

A parser recognises one family of formats **from content** (never from a file name) and turns what it
recognises into :class:`~fleetscope.collectors.evidence.Evidence`. There are two kinds:

* :class:`LineParser` — for logs, where any line may hold a message of the family (kernel log, NCCL,
  PyTorch, libfabric ...). Subclass it, set ``name`` and ``keywords`` (literal substrings; a line reaches
  :meth:`LineParser.feed` only if it contains one of them, which is what keeps a 2 GB log cheap: the
  bundle reader runs one combined regex over whole chunks and hands over only candidate lines), and
  implement ``feed`` (and ``finish`` if the parser keeps state across lines). One instance is made per
  file, so instance state is per-file state. ``feed`` may also see a line that holds only the tail of a
  keyword (see :func:`anchor`), so it must check its own patterns.
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

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.prefixes import Prefixes


@dataclass(frozen=True, slots=True)
class Line:
    """One decoded line handed to a parser.

    Attributes:
        number: 1-based line number in its file.
        text: The whole line as read.
        pre: Its launcher prefixes, timestamp and body (``pre.body`` is what a parser matches).
    """

    number: int
    text: str
    pre: Prefixes


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


def keyword_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, written as a trie.

    Python's ``re`` tries every branch of a plain alternation at every position; sharing prefixes
    (``N(?:VRM|CCL WARN)``) lets it reject most positions after one character, which is what makes
    the prefilter several times faster on multi-GB logs.

    Args:
        words: Literal substrings.

    Returns:
        The pattern text (compile it as ``str`` or encode it for ``bytes``).
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [re.escape(ch) + build(node[ch]) for ch in sorted(k for k in node if k)]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and not ends else "(?:" + "|".join(branches) + ")"
        return body + "?" if ends else body

    return build(trie)


#: Characters rare in logs: an anchor starting with one lets the prefilter skip most positions at once.
_RARE_FIRST = "kqxzjvwybgfpm"
#: Shortest anchor cut from a keyword.
_MIN_ANCHOR = 4


def anchor(keyword: str) -> str:
    """The tail of ``keyword`` the prefilter looks for: it starts at the keyword's rarest character.

    ``re`` checks the first character of every branch at every position, so an anchor starting with an
    upper-case letter or a rare one ("bfabric:" for "libfabric:") is tried far less often. A line holding
    the keyword always holds its anchor; parsers re-check their own patterns on the lines they get.

    Args:
        keyword: A parser keyword.

    Returns:
        A suffix of ``keyword`` at least four characters long (or the keyword itself if shorter).
    """

    def rarity(ch: str) -> int:
        if ch.isupper() or ch in "<>|!@#$%^&*{}~`\"'?;+":
            return 0
        if ch in _RARE_FIRST:
            return 1
        if ch.isdigit() or ch in "([])=_,":
            return 2
        return 4 if ch.isspace() else 3

    if len(keyword) <= _MIN_ANCHOR:
        return keyword
    start = min(range(len(keyword) - _MIN_ANCHOR + 1), key=lambda i: (rarity(keyword[i]), i))
    return keyword[start:]


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

    @classmethod
    def sniff(cls, head: str) -> bool:
        """Say whether a file whose first 64 KB are ``head`` is this parser's format."""
        raise NotImplementedError

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        """Yield the evidence in the whole file, given every line in order."""
        raise NotImplementedError
