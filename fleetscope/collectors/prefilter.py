"""The log prefilter: which lines of a buffer hold one of the parsers' keywords, and whose keywords.

Most lines of a multi-GB training or kernel log are noise to every parser. The bundle reader hands each
buffer of whole lines to a :class:`KeywordMatcher`, which runs one Hyperscan literal database over it
in C (Intel's multi-pattern matcher, well over 1 GB/s on one core for our ~170 keywords) and returns only
the lines holding a keyword, each with the tags (parser indices) of the keywords it holds, so Python
never looks at the other lines and never searches a candidate line again to dispatch it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import cast

import hyperscan


class KeywordMatcher:
    """Finds the lines of a buffer that hold any of a set of literal, case-sensitive keywords.

    Args:
        keywords: Each keyword (a literal substring, no newline) and the tags a line holding it gets
            (for the engine: the indices of the parsers that asked for it).

    Raises:
        ValueError: No keywords, or one that is empty or holds a newline.
    """

    def __init__(self, keywords: Mapping[str, Sequence[int]]) -> None:
        words = sorted(keywords)
        if not words or any(not w or "\n" in w for w in words):
            raise ValueError("keywords must be non-empty literals without a newline")
        self.keywords: tuple[str, ...] = tuple(words)
        self._tags: tuple[tuple[int, ...], ...] = tuple(tuple(sorted(set(keywords[w]))) for w in words)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(
            expressions=[w.encode() for w in words],
            ids=list(range(len(words))),
            elements=len(words),
            flags=[0] * len(words),
            literal=True,
        )
        # Hyperscan's scratch space may serve one scan at a time: one per thread (the console may run
        # two investigations at once).
        self._local = threading.local()

    def _scratch(self) -> hyperscan.Scratch:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        return scratch

    def lines(self, buf: bytes, end: int | None = None) -> list[tuple[int, int, tuple[int, ...]]]:
        """The candidate lines of ``buf[:end]``.

        Args:
            buf: Bytes holding whole lines separated by ``\\n``.
            end: Where to stop (default: the whole buffer); a keyword must end at or before it.

        Returns:
            ``(start, stop, tags)`` per candidate line in buffer order: the line is ``buf[start:stop]``
            (without its newline) and ``tags`` the sorted union of the tags of the keywords it holds.
        """
        stop_at = len(buf) if end is None else end
        data = buf if stop_at == len(buf) else buf[:stop_at]
        hits: list[tuple[int, int]] = []
        self._db.scan(data, match_event_handler=_collect, context=hits, scratch=self._scratch())
        hits.sort()
        out: list[tuple[int, int, tuple[int, ...]]] = []
        line_stop = -1
        tags: set[int] = set()
        for to, ident in hits:
            if to <= line_stop:
                tags.update(self._tags[ident])
                continue
            if line_stop >= 0:
                out[-1] = (out[-1][0], line_stop, tuple(sorted(tags)))
            start = data.rfind(b"\n", 0, to) + 1
            nl = data.find(b"\n", to)
            line_stop = stop_at if nl < 0 else nl
            tags = set(self._tags[ident])
            out.append((start, line_stop, ()))
        if line_stop >= 0:
            out[-1] = (out[-1][0], line_stop, tuple(sorted(tags)))
        return out


def _collect(ident: int, start: int, to: int, flags: int, hits: object) -> None:
    cast(list[tuple[int, int]], hits).append((to, ident))
