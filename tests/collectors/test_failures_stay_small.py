"""A parser or detector that raises on one item loses that item (counted, named in the notes), never the
rest of the file or the detector's other findings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fleetscope.collectors import investigate
from fleetscope.collectors.detectors.base import Detector
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.investigate import Unparsed, run_detector
from fleetscope.collectors.parsers.kernel import KernelLogParser

XID_79 = "[5.1] NVRM: Xid (PCI:0000:18:00): 79, pid=7, name=python, GPU has fallen off the bus.\n"


def test_zero_step_times_beside_an_xid_keep_the_xid(tmp_path: Path) -> None:
    (tmp_path / "node-01").mkdir()
    (tmp_path / "node-01" / "train.log").write_text("step_time=0.0s loss=1.0\n" * 6 + XID_79)
    out = investigate(tmp_path).to_dict()
    assert out["root_causes"][0]["kind"] == "xid:79"
    assert out["unparsed"]["errors"] == 0
    assert not [n for n in out["notes"] if "could not be parsed" in n]


def test_a_parser_raising_on_one_line_loses_that_line_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_feed = KernelLogParser.feed

    def feed(self: KernelLogParser, line: object) -> Iterable[Evidence]:
        if "boom" in getattr(line, "text", ""):
            raise ValueError("odd line")
        return real_feed(self, line)  # type: ignore[arg-type]

    monkeypatch.setattr(KernelLogParser, "feed", feed)
    (tmp_path / "node-01").mkdir()
    (tmp_path / "node-01" / "dmesg.txt").write_text("[1.0] NVRM: boom\n" + XID_79)
    out = investigate(tmp_path).to_dict()
    assert out["root_causes"][0]["kind"] == "xid:79"
    assert out["unparsed"]["errors"] == 1
    note = "node-01/dmesg.txt: 1 item(s) lost in parser kernel (ValueError: odd line; first: line 1)"
    assert note in out["notes"]


class _Fragile(Detector):
    """Raises on evidence whose text says so, and makes one finding per other item."""

    name = "fragile"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        out = []
        for e in evidence:
            if "raise" in e.text:
                raise KeyError("odd evidence")
            out.append(Finding(e.kind, None, "symptom", "warning", 0.1, e.text, explains="node"))
        return out


def test_a_detector_raising_on_one_item_loses_that_item_only() -> None:
    evidence = [
        Evidence(kind="xid", text=t, source=f"node-01/a.log:{i}")
        for i, t in enumerate(["a", "raise", "b", "c"], 1)
    ]
    unparsed = Unparsed()
    findings = run_detector(_Fragile, evidence, unparsed)
    assert [f.summary for f in findings] == ["a", "b", "c"]
    assert unparsed.errors == 1
    assert unparsed.all_notes() == [
        "detectors: 1 item(s) lost in detector fragile (KeyError: 'odd evidence'; first: node-01/a.log:2)"
    ]


def test_a_document_parser_raising_on_one_row_loses_that_row_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetscope.collectors.parsers.nvidia_smi import NvidiaSmiCsvParser

    real_row = NvidiaSmiCsvParser._row

    def row(
        self: NvidiaSmiCsvParser, line: Any, cells: list[str], header: list[str] | None
    ) -> Iterator[Evidence]:
        if line.number == 2:
            raise ValueError("odd row")
        return real_row(self, line, cells, header)

    monkeypatch.setattr(NvidiaSmiCsvParser, "_row", row)
    (tmp_path / "node-01").mkdir()
    (tmp_path / "node-01" / "smi.csv").write_text(
        "index, pci.bus_id, ecc.errors.uncorrected.volatile.total\n"
        "0, 00000000:07:00.0, 0\n"
        "1, 00000000:0B:00.0, 0\n"
        "2, 00000000:48:00.0, 7\n"
    )
    result = investigate(tmp_path)
    assert sorted(e.gpu for e in result.evidence if e.kind == "gpu_identity") == [1, 2]
    assert result.to_dict()["root_causes"][0]["gpu"] == 2
    assert result.unparsed.errors == 1


def test_garbled_rank_numbers_cost_nothing(tmp_path: Path) -> None:
    # Listing the ranks between 0 and 99999999999 that "never reported" would never finish.
    (tmp_path / "node-01").mkdir()
    (tmp_path / "node-01" / "train.log").write_text(
        "[rank0]:[E ProcessGroupNCCL.cpp:1] [Rank 0] Watchdog caught collective operation timeout: "
        "WorkNCCL(SeqNum=5, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600001 milliseconds\n"
        "[rank9]:[E ProcessGroupNCCL.cpp:1] [Rank 99999999999] Watchdog caught collective operation timeout: "
        "WorkNCCL(SeqNum=5, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600001 milliseconds\n"
        "node-01:1:1 [0] NCCL INFO comm 0x1 rank 0 nRanks 99999999999 cudaDev 0 busId 18000 - Init COMPLETE\n"
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert top["kind"] == "c10d_watchdog_timeout:5"
    assert "never reported" not in top["summary"]
