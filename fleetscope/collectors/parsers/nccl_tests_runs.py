"""nccl-tests runs over sets of nodes: which nodes each run used and the bus bandwidth it reached.

Two shapes, each giving one ``nccl_tests_run`` evidence per run (``nodes``: the sorted node names,
``busbw_gb_s``: the bus bandwidth in GB/s):

* The tool's own output (nccl-tests src/common.cu): the header lists every rank as ``#  Rank  0 Group  0
  Pid  5950 on node-01 device  0 [0x34] NVIDIA H800``, and the run ends with ``# Avg bus bandwidth :
  182.3``; the hosts of the rank lines since the previous result are the run's nodes. Several runs may
  follow each other in one file.
* The small tables people keep of many runs (CSV, TSV, Markdown or space-aligned): a header naming a bus
  bandwidth column (``busbw``, ``bus_bw``, ``bus bandwidth`` ...) and columns naming the nodes of the run
  (``node``, ``host``, ``pair``, ``src``/``dst`` ...), at the top of the file; one row per run, e.g.
  ``node-01,node-03,47.1`` or ``| node-01 + node-03 | 47.1 |``. Node names are the words in those cells
  that hold a digit (``node-03``, ``gpu-a17``, ``ip-10-1-2-3``). Such a file is one document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import DocumentParser, FileContext, Line, LineParser

_RANK = re.compile(r"#\s*Rank\s+\d+\s+Group\s+\d+\s+Pid\s+\d+\s+on\s+(?P<host>\S+)\s+device\b")
_AVG = re.compile(r"#\s*Avg bus bandwidth\s*:\s*(?P<value>\d+(?:\.\d+)?)\b(?!\.)")
_BUSBW_HEADER = re.compile(r"bus[ _-]?(?:bw|bandwidth)", re.IGNORECASE)
_NODE_HEADER = re.compile(r"node|host|pair|peer|src|dst|server|client|machine", re.IGNORECASE)
_NODE_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\d[A-Za-z0-9_.-]*")
_NUMBER = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?:GB/s|GBps|Gbps)?\s*$", re.IGNORECASE)
_ANY = re.compile(r"\s*[,\t|;]\s*|\s{2,}")
_ALIGNED = re.compile(r"\s{2,}")


def _run(ctx: FileContext, line: Line, nodes: Iterable[str], value: float) -> Evidence:
    return ctx.evidence(
        line, "nccl_tests_run", node=None, attrs={"nodes": sorted(set(nodes)), "busbw_gb_s": value}
    )


class NcclTestsRunParser(LineParser):
    """The node set and bus bandwidth of each nccl-tests run in a log."""

    name = "nccl-tests-runs"
    keywords = (" Pid ", "Avg bus bandwidth")

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._hosts: set[str] = set()

    def feed(self, line: Line) -> Iterable[Evidence]:
        m = _RANK.search(line.text)
        if m is not None:
            self._hosts.add(m["host"])
            return ()
        m = _AVG.search(line.text)
        if m is None:
            return ()
        hosts, self._hosts = self._hosts, set()
        if len(hosts) < 2:
            return ()  # one node: the per-node comparison of the fabric detector reads it
        return (_run(self.ctx, line, hosts, float(m["value"])),)


class NcclTestsTableParser(DocumentParser):
    """A table of nccl-tests runs: nodes per run and bus bandwidth (see the module docstring)."""

    name = "nccl-tests-table"

    @classmethod
    def sniff(cls, head: str) -> bool:
        lines = [ln for ln in head.splitlines() if ln.strip()][:3]
        return any(_header(ln) is not None for ln in lines)

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        columns: tuple[int, list[int]] | None = None
        sep = _ANY
        for line in lines:
            text = line.text.strip()
            if not text or set(text) <= set("|-:+= "):
                continue  # a Markdown rule or a border
            if columns is None:
                columns = _header(text)
                sep = _separator(text)
                continue
            cells = _cells(text, sep)
            bw_col, node_cols = columns
            if bw_col >= len(cells):
                continue
            m = _NUMBER.match(cells[bw_col])
            if m is None:
                continue
            nodes = {w for i in node_cols if i < len(cells) for w in _NODE_WORD.findall(cells[i])}
            if nodes:
                yield _run(self.ctx, line, nodes, float(m["value"]))


def _separator(header: str) -> re.Pattern[str]:
    """Rows split as their header does: on its delimiter, else on runs of two or more spaces."""
    for sep in ("|", "\t", ",", ";"):
        if sep in header:
            return re.compile(r"\s*" + re.escape(sep) + r"\s*")
    return _ALIGNED


def _cells(text: str, sep: re.Pattern[str] = _ANY) -> list[str]:
    return [c.strip() for c in sep.split(text.strip().strip("|"))]


def _header(text: str) -> tuple[int, list[int]] | None:
    """``(bus bandwidth column, node columns)`` if ``text`` is such a table's header, else ``None``."""
    if text.lstrip().startswith("#") or "algbw" in text or "redop" in text:
        return None  # nccl-tests' own result table, read line by line
    cells = _cells(text)
    bw = [i for i, c in enumerate(cells) if _BUSBW_HEADER.search(c)]
    if len(cells) < 2 or not bw or any(_NUMBER.match(c) for c in cells):
        return None
    nodes = [i for i, c in enumerate(cells) if i != bw[0] and _NODE_HEADER.search(c)]
    return (bw[0], nodes) if nodes else None
