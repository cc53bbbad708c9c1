"""The prefilter never drops a line that holds a parser keyword."""

from __future__ import annotations

import re

import pytest

from fleetscope.collectors.investigate import _ANCHORS, _DISPATCH, _PREFILTER
from fleetscope.collectors.parsers import LINE_PARSERS
from fleetscope.collectors.parsers.base import anchor, keyword_pattern

KEYWORDS = sorted({(p.__name__, k) for p in LINE_PARSERS for k in p.keywords})


@pytest.mark.parametrize(("parser", "keyword"), KEYWORDS)
def test_every_keyword_reaches_its_parser(parser: str, keyword: str) -> None:
    line = f"2024-01-01 00:00:00 something {keyword} else"
    assert _PREFILTER.search(line.encode())
    wanted = {LINE_PARSERS[i].__name__ for m in _DISPATCH.finditer(line) for i in _ANCHORS[m.group(0)]}
    assert parser in wanted


def test_anchor_is_a_suffix_that_avoids_common_first_characters() -> None:
    assert anchor("libfabric:") == "bfabric:"
    assert anchor("NVRM") == "NVRM"
    assert anchor(" half ") == "half "
    for _, keyword in KEYWORDS:
        assert keyword.endswith(anchor(keyword))


def test_trie_pattern_matches_exactly_the_words() -> None:
    words = ["NCCL WARN", "NCCL ERROR", "NVRM", "NET/IB", "N"]
    rx = re.compile(keyword_pattern(words))
    for w in words:
        assert rx.fullmatch(w)
    assert rx.fullmatch("NCCL INFO") is None
    assert rx.search("xx NCCL INFO") is not None  # "N" alone is a word
