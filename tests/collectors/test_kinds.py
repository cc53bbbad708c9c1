"""The evidence-kind registry (:mod:`fleetscope.collectors.kinds`) against the parsers and detectors' code:
no kind made but never read, read but never made, or used without an entry; and a pure correlator."""

from __future__ import annotations

import ast
import copy
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fleetscope.collectors import investigate
from fleetscope.collectors.correlator import correlate
from fleetscope.collectors.detectors import DETECTORS, Detector
from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.history import WINDOW_SECONDS
from fleetscope.collectors.investigate import investigate_window
from fleetscope.collectors.kinds import BY_NAME, KINDS, check, reads, series_readers
from fleetscope.collectors.parsers import DOCUMENT_PARSERS, LINE_PARSERS
from fleetscope.collectors.parsers.prometheus import (
    IDENTITY_SERIES,
    PrometheusParser,
    kept,
    sample_evidence,
    sample_line,
    window_evidence,
)
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


# ------------------------------------------------------------------ metric evidence, by series

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TUNED = Path(__file__).resolve().parent / "tuned"


def _every_sample() -> list[tuple[str, str, dict[str, str], float]]:
    """``(node, name, labels, value)`` of every recognised sample of the real expositions in this
    repository: the exporter's golden files (one node each) and the bundles' metrics files."""
    files = [(path.stem, path) for path in sorted(GOLDEN.glob("*.prom"))]
    for bundles in (EXAMPLES, TUNED):
        files += [(f"{p.parent.parent.name}/{p.parent.name}", p) for p in sorted(bundles.glob("*/*/*.prom"))]
    found = []
    for node, path in files:
        for family in text_string_to_metric_families(path.read_text()):
            found += [(node, s.name, s.labels, s.value) for s in family.samples if kept(s.name)]
    return found


def _metric_evidence(samples: list[tuple[str, str, dict[str, str], float]]) -> list[Evidence]:
    """Every sample as ``metric`` evidence (no series left out), as the mapping makes it, plus each node's
    window length (what the live collector adds) so that the rates detector reads the counters too."""
    out: list[Evidence] = []
    for i, (node, name, labels, value) in enumerate(samples):
        text = sample_line(name, labels, value)
        out += sample_evidence(name, labels, value, node=node, source=f"{node}:{i}", seen=set(), text=text)
    for node in {s[0] for s in samples}:
        text = sample_line(WINDOW_SECONDS, {}, 300.0)
        out += sample_evidence(
            WINDOW_SECONDS, {}, 300.0, node=node, source=f"{node}:0", seen=set(), text=text
        )
    return [e for e in out if e.kind == "metric"]


def _findings(detector: type[Detector], evidence: list[Evidence]) -> list[tuple[Any, ...]]:
    return [(f.kind, f.node, f.gpu, f.summary) for f in detector().detect(evidence)]


def test_metric_readers_declare_their_series_and_only_they_do() -> None:
    for detector in DETECTORS:
        assert bool(detector.series) == (detector.name in BY_NAME["metric"].read_by), detector.name


def test_a_detector_handed_only_its_series_finds_what_it_finds_on_every_sample() -> None:
    """The real samples, and the same with one H100's series far above the others' (so that the numeric
    rules fire): the declared series alone give the same findings as all."""
    samples = _every_sample()

    def off(node: str, labels: dict[str, str]) -> bool:
        return (node, labels.get("gpu")) == ("gpu_h100_sxm_x8", "3")

    loud = [
        (node, name, labels, value * 1000 + 1000 if off(node, labels) else value)
        for node, name, labels, value in samples
    ]
    found_by = set()
    for variant in (samples, loud):
        every = _metric_evidence(variant)
        for detector in DETECTORS:
            if not detector.series:
                continue
            declared = [
                e for e in every if detector.name in series_readers(e.attrs["name"]).of(e.attrs["value"])
            ]
            assert len(declared) < len(every), f"{detector.name} declares every series"
            findings = _findings(detector, declared)
            assert findings == _findings(detector, every), detector.name
            if findings:
                found_by.add(detector.name)
    # The comparison is not vacuous: the rules of these detectors fired on the samples.
    assert {"gpu_health", "peer_deviation", "rates", "xid", "fabric"} <= found_by, found_by


def test_sample_evidence_matches_its_kinds_entries_by_construction() -> None:
    """The live path hands sample evidence over unchecked: every item the mapping makes passes the check."""
    seen: set[tuple[int, str]] = set()
    made = 0
    for node, name, labels, value in _every_sample():
        text = sample_line(name, labels, value)
        for e in sample_evidence(name, labels, value, node=node, source=f"{node}:1", seen=seen, text=text):
            check(e, PrometheusParser.name)
            made += 1
    assert made > 1000


def test_a_window_gives_the_evidence_its_exposition_gives_sample_by_sample() -> None:
    """:func:`window_evidence` (the live window, in bulk, its text and source written when read) and
    :func:`sample_evidence` (a bundle's file, one sample at a time) make the same evidence of every real
    exposition in this repository, and each live item passes its kind's check."""
    files = (
        sorted(GOLDEN.glob("*.prom")) + sorted(EXAMPLES.glob("*/*/*.prom")) + sorted(TUNED.glob("*/*/*.prom"))
    )
    compared = 0
    for path in files:
        families = list(text_string_to_metric_families(path.read_text()))
        live, _, _, per_name = window_evidence(families, node="node-01", rel="node-01/metrics")
        one_by_one: list[Evidence] = []
        seen: set[tuple[int, str]] = set()
        position = 0
        for family in families:
            for s in family.samples:
                position += 1
                read = kept(s.name) and bool(series_readers(s.name).of(s.value))
                if not (read or (kept(s.name) and s.name.startswith(IDENTITY_SERIES))):
                    continue
                one_by_one += sample_evidence(
                    s.name,
                    s.labels,
                    s.value,
                    node="node-01",
                    source=f"node-01/metrics:{position}",
                    seen=seen,
                    text=sample_line(s.name, s.labels, s.value),
                    metric=read,
                )
        assert [_fields(e) for e in live] == [_fields(e) for e in one_by_one], path
        for e in live:
            check(e, PrometheusParser.name)
        assert sum(per_name.values()) == len(live)
        compared += len(live)
    assert compared > 500


def _fields(e: Evidence) -> tuple[Any, ...]:
    return (e.kind, e.text, e.source, e.node, e.gpu, e.gpu_pci_bus_id, e.layer, e.severity, e.attrs)


def test_families_nobody_reads_are_understood_but_never_evidence(tmp_path: Path) -> None:
    """A live window and the same window as a bundle file: temperatures (no detector reads them) are
    understood lines without evidence; the GPU's ``up`` series is evidence, quoted as written."""
    text = (
        "# TYPE fleetscope_gpu_temperature_celsius gauge\n"
        'fleetscope_gpu_temperature_celsius{gpu="0"} 41.0\n'
        'fleetscope_gpu_temperature_celsius{gpu="1"} 43.0\n'
        "# TYPE fleetscope_gpu_up gauge\n"
        'fleetscope_gpu_up{gpu="0"} 1.0\n'
        'fleetscope_gpu_up{gpu="1"} 0.0\n'
    )
    (tmp_path / "node-01").mkdir()
    (tmp_path / "node-01" / "metrics.prom").write_text(text)
    live = investigate_window({"node-01": list(text_string_to_metric_families(text))}, {})
    offline = investigate(tmp_path)
    for found in (live, offline):
        assert [e.attrs["name"] for e in found.evidence] == ["fleetscope_gpu_up"] * 2
        assert found.lines_understood == 4
        top = found.to_dict()["root_causes"][0]
        assert (top["node"], top["gpu"]) == ("node-01", 1)
        assert top["evidence"][0]["text"] == 'fleetscope_gpu_up{gpu="1"} 0.0'


def test_a_series_read_only_above_zero_is_evidence_only_above_zero() -> None:
    """Clock-event reasons that are not active say nothing to the GPU-health detector (its
    ``above_zero``): they are understood, not evidence; the active hardware slowdown is, and is found."""
    for detector in DETECTORS:
        assert set(detector.above_zero) <= set(detector.series), detector.name
    text = "# TYPE fleetscope_gpu_clock_event_reason_active gauge\n" + "".join(
        f'fleetscope_gpu_clock_event_reason_active{{gpu="{gpu}",reason="{reason}"}} {active}\n'
        for gpu in range(4)
        for reason, active in (("gpu_idle", 0.0), ("hw_slowdown", 1.0 if gpu == 2 else 0.0))
    )
    found = investigate_window({"node-01": list(text_string_to_metric_families(text))}, {})
    assert [(e.gpu, e.attrs["labels"]["reason"]) for e in found.evidence] == [(2, "hw_slowdown")]
    assert found.lines_understood == 8
    top = found.to_dict()["root_causes"][0]
    assert (top["layer"], top["gpu"]) == ("thermal_power", 2)
