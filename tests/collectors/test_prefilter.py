"""The prefilter never drops a line that holds a parser keyword, and hands each line to its parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetscope.collectors.bundle import CHUNK_BYTES, ReadStats, scan_lines
from fleetscope.collectors.investigate import PREFILTER
from fleetscope.collectors.parsers import LINE_PARSERS
from fleetscope.collectors.prefilter import KeywordMatcher

KEYWORDS = sorted({(p.__name__, k) for p in LINE_PARSERS for k in p.keywords})


@pytest.mark.parametrize(("parser", "keyword"), KEYWORDS)
def test_every_keyword_reaches_its_parser(parser: str, keyword: str) -> None:
    line = f"2024-01-01 00:00:00 something {keyword} else".encode()
    ((start, stop, tags),) = PREFILTER.lines(line)
    assert (start, stop) == (0, len(line))
    assert parser in {LINE_PARSERS[i].__name__ for i in tags}


def test_lines_are_whole_and_tags_are_the_union_of_their_keywords() -> None:
    m = KeywordMatcher({"NCCL WARN": [1], "NVRM": [0], "Xid": [0, 2]})
    buf = b"noise\nNVRM: Xid 79\nok\nNCCL WARN x NVRM\nNCCL INFO\ntail NVRM"
    got = [(buf[a:b], tags) for a, b, tags in m.lines(buf)]
    assert got == [
        (b"NVRM: Xid 79", (0, 2)),
        (b"NCCL WARN x NVRM", (0, 1)),
        (b"tail NVRM", (0,)),
    ]
    # A keyword must end at or before ``end``: the partial line after it is not looked at.
    head = [buf[a:b] for a, b, _ in m.lines(buf, buf.index(b"tail"))]
    assert head == [b"NVRM: Xid 79", b"NCCL WARN x NVRM"]


def test_matching_is_literal_and_case_sensitive() -> None:
    m = KeywordMatcher({"a.b(c)": [0]})
    assert m.lines(b"a.b(c)\naxb(c)\nA.B(C)") == [(0, 6, (0,))]


@pytest.mark.parametrize("words", [{}, {"": [0]}, {"a\nb": [0]}])
def test_bad_keywords_are_refused(words: dict[str, list[int]]) -> None:
    with pytest.raises(ValueError, match="keywords"):
        KeywordMatcher(words)


def test_line_numbers_and_tags_survive_chunk_boundaries(tmp_path: Path) -> None:
    # Lines long enough that several chunks are read; every 1000th line holds a keyword.
    filler = "x" * 300
    lines = [f"{i} NVRM: Xid {i}" if i % 1000 == 0 else f"{i} {filler}" for i in range(1, 40001)]
    path = tmp_path / "kern.log"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 2 * CHUNK_BYTES
    stats = ReadStats()
    got = list(scan_lines(path, stats, KeywordMatcher({"NVRM": [7]})))
    assert [(n, raw.decode()) for n, raw, _ in got] == [(i, lines[i - 1]) for i in range(1000, 40001, 1000)]
    assert {tags for _, _, tags in got} == {(7,)}
    assert stats.lines == 40000
