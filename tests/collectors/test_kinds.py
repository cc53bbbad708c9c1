"""The evidence-kind registry (:mod:`fleetscope.collectors.kinds`) against the parsers and detectors' code:
no kind made but never read, read but never made, or used without an entry; and a pure correlator."""

from __future__ import annotations

import ast
import copy
import inspect
import json
import sys
from pathlib import Path

from fleetscope.collectors import investigate
from fleetscope.collectors.correlator import correlate
from fleetscope.collectors.detectors import DETECTORS
from fleetscope.collectors.kinds import BY_NAME, KINDS, reads
from fleetscope.collectors.parsers import DOCUMENT_PARSERS, LINE_PARSERS
from tests.collectors.judging import without_answer

PARSERS = {p.name: p for p in (*LINE_PARSERS, *DOCUMENT_PARSERS)}
DETECTOR_NAMES = {d.name: d for d in DETECTORS}
EXAMPLES = Path(__file__).resolve().parents[2] / "fleetscope" / "examples" / "incidents"


def _module_tree(cls: type) -> ast.Module:
    return ast.parse(inspect.getsource(sys.modules[cls.__module__]))


def _constants(tree: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_every_kind_is_made_by_a_parser_and_read_by_a_detector() -> None:
    for kind in KINDS:
        assert kind.made_by, f"{kind.name} is made by no parser"
        assert kind.read_by, f"{kind.name} is read by no detector"
        for name in kind.made_by:
            assert name in PARSERS, f"{kind.name}: no parser named {name!r}"
            assert kind.name in _constants(_module_tree(PARSERS[name])), f"{name} never makes {kind.name}"
        for name in kind.read_by:
            assert name in DETECTOR_NAMES, f"{kind.name}: no detector named {name!r}"
            tree = _module_tree(DETECTOR_NAMES[name])
            assert kind.name in _constants(tree), f"detector {name} never reads {kind.name}"


def test_parsers_make_only_registered_kinds() -> None:
    for parser in PARSERS.values():
        for node in ast.walk(_module_tree(parser)):
            # self.ctx.evidence(line, "kind", ...) and its local alias ev(line, "kind", ...)
            if (
                isinstance(node, ast.Call)
                and (getattr(node.func, "attr", None) == "evidence" or getattr(node.func, "id", None) == "ev")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                assert node.args[1].value in BY_NAME, (
                    f"{parser.name} makes unregistered {node.args[1].value!r}"
                )


def test_detectors_compare_only_kinds_they_are_handed() -> None:
    for detector in DETECTORS:
        for node in ast.walk(_module_tree(detector)):
            if isinstance(node, ast.Compare) and getattr(node.left, "attr", None) == "kind":
                named = _constants(ast.Module(body=[ast.Expr(c) for c in node.comparators], type_ignores=[]))
                assert named <= reads(detector.name) | {""}, (
                    f"{detector.name} reads {named - reads(detector.name)}"
                )


def test_investigating_twice_in_one_process_gives_identical_json() -> None:
    with without_answer(EXAMPLES / "23-xid31-priv-violation-then-xid62-xid45-cascade") as bundle:
        first = json.dumps(investigate(bundle).to_dict(), sort_keys=True)
        second = json.dumps(investigate(bundle).to_dict(), sort_keys=True)
    assert first == second


def test_the_correlator_does_not_modify_its_findings() -> None:
    findings = []
    for detector in DETECTORS:
        findings.extend(
            detector().detect(
                investigate(EXAMPLES / "23-xid31-priv-violation-then-xid62-xid45-cascade").evidence
            )
        )
    before = copy.deepcopy(findings)
    correlate(findings)
    assert findings == before


def test_rm_init_failed_names_the_gpu_the_driver_could_not_initialise(tmp_path: Path) -> None:
    (tmp_path / "node-01").mkdir()
    (tmp_path / "node-01" / "dmesg.txt").write_text(
        "[   12.5] NVRM: GPU 0000:3b:00.0: RmInitAdapter failed! (0x26:0xffff:1289)\n"
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["kind"], top["layer"], top["gpu_pci_bus_id"]) == (
        "rm_init_failed",
        "gpu_hardware",
        "0000:3b:00.0",
    )
    assert "(0x26:0xffff:1289)" in top["summary"]


def test_an_lsmod_row_shows_the_module_is_there_for_the_running_kernel(tmp_path: Path) -> None:
    node = tmp_path / "node-01"
    node.mkdir()
    (node / "uname.txt").write_text("Linux node-01 5.15.0-91-generic #101-Ubuntu SMP x86_64 GNU/Linux\n")
    (node / "modules.txt").write_text("/lib/modules/5.15.0-88-generic/updates/dkms/nvidia.ko\n")
    missing = investigate(tmp_path).to_dict()["root_causes"]
    assert [r["kind"] for r in missing] == ["module_missing_for_running_kernel"]
    (node / "lsmod.txt").write_text(
        "Module                  Size  Used by\n"
        "nvidia_uvm           1437696  0\n"
        "nvidia_modeset       1212416  1 nvidia_drm\n"
        "nvidia              56524800  12 nvidia_uvm,nvidia_modeset\n"
    )
    assert investigate(tmp_path).to_dict()["incident"] is False
