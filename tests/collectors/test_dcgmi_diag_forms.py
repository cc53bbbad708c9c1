"""``dcgmi diag`` in every form: per-GPU rows, wrapped cells, warnings inside the table, the Deployment
section's errors, DCGM 4's per-GPU layout, and ``-j`` JSON.

Shapes follow DCGM's own printer (NVIDIA/DCGM dcgmi/Diag.cpp: a 27-character name column, results
``Pass``/``Fail``/``Warn``/``Skip`` with ``- GPU: N``, ``- GPUs: a, b`` or ``- All`` in DCGM 3, a
``GPU<N>: <result>`` row per GPU and ``Warning: GPU<N>`` rows in DCGM 4, messages wrapped every 45
characters) and its JSON keys (nvvs/include/NvvsJsonStrings.h: ``test_categories``, ``tests``,
``results``, ``status``, ``warnings``, ``warning``, ``error_id``, ``gpu_id`` / ``entity_group`` /
``entity_id``). Messages are DCGM's (dcgmlib/dcgm_errors.h ``DCGM_FR_*_MSG``) with numbers filled in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.collectors.judging import diagnose

BORDER = "+---------------------------+------------------------------------------------+"


def row(name: str, info: str) -> str:
    return f"| {name:<25} | {info:<46} |"


def wrapped(name: str, message: str) -> list[str]:
    """A message row as dcgmi prints it: the name once, the text cut every 45 characters."""
    parts = [message[i : i + 45] for i in range(0, len(message), 45)]
    return [row(name if i == 0 else "", part) for i, part in enumerate(parts)]


def table(*sections: tuple[str, list[str]]) -> str:
    lines = ["Successfully ran diagnostic for group.", BORDER, row("Diagnostic", "Result")]
    lines.append("+===========================+================================================+")
    for title, rows in sections:
        lines.append(f"+-----  {title}  " + "-" * (18 - len(title)) + "+" + "-" * 48 + "+")
        lines.extend(rows)
    lines.append(BORDER)
    return "\n".join(lines) + "\n"


PASSING_DEPLOYMENT = [row(n, "Pass") for n in ("Denylist", "NVML Library", "Persistence Mode")]

# (DCGM error message with its numbers filled in, the layer it points at)
MESSAGES = [
    ("GPU 5 had memory errors and row remappings are pending", "gpu_memory"),
    ("GPU 5 had uncorrectable memory errors and row remapping failed.", "gpu_memory"),
    ("A pending retired page has been detected in GPU 5.", "gpu_memory"),
    ("Detected 2 volatile double-bit ECC error(s) in GPU 5.", "gpu_memory"),
    ("Detected 12.0 CRC NvLink errors on GPU 5's NVLink which exceeds threshold of 10", "nvlink"),
    ("GPU 5's NvLink link 3 is currently down", "nvlink"),
    ("Detected clocks event due to thermal violation in GPU 5.", "thermal_power"),
    (
        "GPU 5 is running at PCI link generation 3, which is below the minimum allowed link generation of 4 "
        "(parameter 'pcie.min_pci_generation')",
        "gpu_hardware",
    ),
    ("Persistence mode for GPU 5 is disabled.", "host_software"),
    ("Detected XID 79 for GPU 5", "gpu_hardware"),
]


def test_dcgm3_gpu_lists_and_a_failed_gpu_on_a_continuation_row(tmp_path: Path) -> None:
    text = table(
        ("Deployment", PASSING_DEPLOYMENT),
        ("Integration", [row("PCIe", "Pass - GPUs: 0, 1, 2, 4, 5, 6, 7"), row("", "Fail - GPU: 3")]),
        ("Hardware", [row("GPU Memory", "Pass - All")]),
    )
    report = diagnose(tmp_path, {"node-07/dcgmi-diag.txt": text})
    located = [(r["kind"], r["layer"], r["node"], r["gpu"]) for r in report["root_causes"]]
    assert located == [("dcgm_diag:pcie", "gpu_hardware", "node-07", 3)]


def test_passing_lists_and_skips_are_no_incident(tmp_path: Path) -> None:
    text = table(
        ("Deployment", PASSING_DEPLOYMENT),
        ("Integration", [row("PCIe", "Pass - GPUs: 0, 1, 2"), row("", "Skip - GPU: 3")]),
    )
    assert diagnose(tmp_path, {"node-07/dcgmi-diag.txt": text})["incident"] is False


@pytest.mark.parametrize(("message", "layer"), MESSAGES)
def test_deployment_error_with_a_wrapped_warning_names_its_gpu_and_layer(
    tmp_path: Path, message: str, layer: str
) -> None:
    deployment = [*PASSING_DEPLOYMENT, row("Page Retirement/Row Remap", "Fail"), *wrapped("Warning", message)]
    text = table(("Deployment", deployment), ("Integration", [row("PCIe", "Pass - All")]))
    top = diagnose(tmp_path, {"node-07/dcgmi-diag.txt": text})["root_causes"][0]
    assert (top["layer"], top["node"], top["gpu"]) == (layer, "node-07", 5)
    # The whole message survives the wrapping (dcgmi cuts words; the reader joins the pieces).
    assert message.replace(" ", "")[:60] in top["summary"].replace(" ", "")


@pytest.mark.parametrize(("message", "layer"), MESSAGES)
def test_dcgm4_per_gpu_rows_and_named_warnings(tmp_path: Path, message: str, layer: str) -> None:
    rows = [row("software", "Fail"), row("", "GPU0: Pass"), row("", "GPU5: Fail")]
    rows += wrapped("Warning: GPU5", message)
    text = table(("Deployment", rows), ("Hardware", [row("memory", "Pass"), row("", "GPU0: Pass")]))
    report = diagnose(tmp_path, {"node-07/diag.txt": text})
    top = report["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu"]) == ("dcgm_diag:software", layer, "node-07", 5)
    assert len(report["root_causes"]) == 1


def test_a_warned_test_is_a_weaker_cause_than_a_failed_one(tmp_path: Path) -> None:
    text = table(
        ("Integration", [row("PCIe", "Warn - GPU: 1")]),
        ("Stress", [row("Memory Bandwidth", "Fail - GPUs: 6")]),
    )
    causes = diagnose(tmp_path, {"node-03/diag.txt": text})["root_causes"]
    assert [(c["kind"], c["gpu"]) for c in causes] == [
        ("dcgm_diag:memory_bandwidth", 6),
        ("dcgm_diag:pcie", 1),
    ]
    assert "warned" in causes[1]["summary"]


def test_a_table_inside_a_timestamped_log(tmp_path: Path) -> None:
    rows = [row("memory", "Fail"), row("", "GPU2: Fail"), *wrapped("Warning: GPU2", MESSAGES[0][0])]
    text = "".join(
        f"2025-03-04T10:00:0{i % 10}Z health-check: {ln}\n"
        for i, ln in enumerate(table(("Hardware", rows)).splitlines())
    )
    top = diagnose(tmp_path, {"node-11/health-check.log": text})["root_causes"][0]
    assert (top["layer"], top["node"], top["gpu"]) == ("gpu_memory", "node-11", 2)


def _json(results: list[dict], name: str = "software", category: str = "Deployment") -> str:
    doc = {
        "DCGM Diagnostic": {
            "test_categories": [
                {"category": category, "tests": [{"name": name, "results": results}]},
                {"category": "Integration", "tests": [{"name": "pcie", "results": [{"status": "Pass"}]}]},
            ],
            "version": "4.1.1",
        }
    }
    return json.dumps(doc, indent=4)


def test_json_dcgm4_entities_and_error_id(tmp_path: Path) -> None:
    results = [
        {"entity_group": "GPU", "entity_group_id": 1, "entity_id": 0, "status": "Pass"},
        {
            "entity_group": "GPU",
            "entity_group_id": 1,
            "entity_id": 3,
            "status": "Fail",
            # error_id 85 is DCGM_FR_PENDING_ROW_REMAP; the text alone would not name the layer.
            "warnings": [
                {"warning": "Check failed", "error_id": 85, "error_category": 1, "error_severity": 2}
            ],
        },
    ]
    top = diagnose(tmp_path, {"node-07/diag.json": _json(results)})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu"]) == (
        "dcgm_diag:software",
        "gpu_memory",
        "node-07",
        3,
    )


def test_json_dcgm3_gpu_id_strings(tmp_path: Path) -> None:
    results = [
        {"gpu_id": "0", "status": "Pass"},
        {
            "gpu_id": "6",
            "status": "Fail",
            "warnings": [{"warning": MESSAGES[4][0].replace("5", "6"), "error_id": 13}],
        },
    ]
    top = diagnose(tmp_path, {"node-01/diag.json": _json(results, "NVLink", "Integration")})["root_causes"][0]
    assert (top["layer"], top["gpu"]) == ("nvlink", 6)


def test_json_passing_is_no_incident_and_broken_json_is_noted(tmp_path: Path) -> None:
    assert (
        diagnose(tmp_path / "a", {"node-01/diag.json": _json([{"gpu_id": "0", "status": "Pass"}])})[
            "incident"
        ]
        is False
    )
    report = diagnose(tmp_path / "b", {"node-01/diag.json": '{"test_categories": [ {"category": '})
    assert any("diag.json" in n for n in report["notes"])
