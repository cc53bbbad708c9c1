"""nccl-tests results over node pairs and node sets: the node common to the slow runs is the culprit.

The tool's own output follows nccl-tests src/common.cu (the ``#  Rank  0 Group  0 Pid  5950 on <host>
device  0 [0x34] <GPU>`` lines, as quoted in NVIDIA/nccl-tests issue 183, the result table and
``# Avg bus bandwidth``); the summary tables are the CSV, Markdown and aligned-text shapes people keep of
many runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.judging import diagnose

NODES = ["node-01", "node-02", "node-03", "node-04"]
GOOD, BAD = 182.4, 47.9


def _pairs(slow: str | None) -> list[tuple[str, str, float]]:
    return [
        (a, b, BAD if slow in (a, b) else GOOD - i)
        for i, (a, b) in enumerate((a, b) for n, a in enumerate(NODES) for b in NODES[n + 1 :])
    ]


def _tool_output(hosts: list[str], busbw: float) -> str:
    ranks = "".join(
        f"#  Rank {2 * i + d:2d} Group  0 Pid {5950 + 10 * i + d:6d} on {h:>10s} device {d:2d} "
        f"[0x{0x18 + d:02x}] NVIDIA H100 80GB HBM3\n"
        for i, h in enumerate(hosts)
        for d in range(2)
    )
    return (
        "# nThread 1 nGpus 1 minBytes 8 maxBytes 8589934592 step: 2(factor) warmup iters: 5 iters: 20 agg "
        "iters: 1 validation: 1 graph: 0\n#\n# Using devices\n" + ranks + "#\n"
        "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   "
        "algbw   busbw #wrong\n"
        f"  8589934592    2147483648     float     sum      -1    70650  121.58  {busbw:6.2f}      0    "
        f"70480  121.88  {busbw:6.2f}      0\n"
        "# Out of bounds values : 0 OK\n"
        f"# Avg bus bandwidth    : {busbw}\n#\n"
    )


@pytest.mark.parametrize("slow", NODES)
def test_tool_output_per_pair_names_the_common_node(tmp_path: Path, slow: str) -> None:
    files = {f"nccl-tests/all_reduce_{a}_{b}.log": _tool_output([a, b], v) for a, b, v in _pairs(slow)}
    top = diagnose(tmp_path, files)["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("nccl_tests_slow_path", "network", slow)


def test_several_runs_in_one_file(tmp_path: Path) -> None:
    text = "".join(_tool_output([a, b], v) for a, b, v in _pairs("node-02"))
    top = diagnose(tmp_path, {"sweep.log": text})["root_causes"][0]
    assert (top["node"], top["layer"]) == ("node-02", "network")


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        ("node_a,node_b,busbw_gbps", "{a},{b},{v}"),
        ("host1\thost2\tbus_bw (GB/s)", "{a}\t{b}\t{v}"),
        ("| pair | busbw |\n|---|---|", "| {a} + {b} | {v} |"),
        ("nodes               busBW", "{a},{b}          {v} GB/s"),
    ],
)
def test_tables_of_pairs(tmp_path: Path, header: str, fmt: str) -> None:
    rows = [fmt.format(a=a, b=b, v=v) for a, b, v in _pairs("node-04")]
    top = diagnose(tmp_path, {"nccl-pairs.txt": header + "\n" + "\n".join(rows) + "\n"})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("nccl_tests_slow_path", "network", "node-04")


def test_node_sets(tmp_path: Path) -> None:
    # Bisection over sets of four of eight nodes: node-06 is in both slow sets and no fast one.
    rows = [
        ("node-01 node-02 node-03 node-04", 181.0),
        ("node-05 node-06 node-07 node-08", 61.2),
        ("node-01 node-02 node-05 node-06", 60.8),
        ("node-03 node-04 node-07 node-08", 180.2),
        ("node-01 node-03 node-05 node-07", 182.9),
    ]
    text = "hosts,busbw\n" + "".join(f"{h},{v}\n" for h, v in rows)
    top = diagnose(tmp_path, {"bisect.csv": text})["root_causes"][0]
    assert (top["node"], top["layer"]) == ("node-06", "network")


def test_one_slow_pair_cannot_tell_its_two_nodes_apart(tmp_path: Path) -> None:
    text = "node_a,node_b,busbw\nnode-01,node-02,180\nnode-03,node-04,48\nnode-05,node-06,181\n"
    report = diagnose(tmp_path, {"pairs.csv": text})
    top = report["root_causes"][0]
    assert top["node"] is None and top["certainty"] == "unsure"
    assert "node-03, node-04" in top["summary"]


def test_even_runs_are_no_incident(tmp_path: Path) -> None:
    files = {f"r/{a}_{b}.log": _tool_output([a, b], v) for a, b, v in _pairs(None)}
    assert diagnose(tmp_path, files)["incident"] is False


def test_the_tools_own_table_is_not_taken_for_a_summary_table(tmp_path: Path) -> None:
    # The result table of one run (busbw column, no node column) stays the nccl-tests parser's.
    text = _tool_output(["node-01", "node-02"], 180.0).split("#\n", 2)[-1]
    report = diagnose(tmp_path, {"node-01/nccl.log": text})
    assert report["incident"] is False
