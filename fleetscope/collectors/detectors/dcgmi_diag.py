"""``dcgmi diag``: a failed or warning test is a cause on the GPU it names (or the node).

The layer comes from ``dcgm_diag.yaml``: the DCGM error the message carries (its ``error_id`` from
``dcgmi diag -j``, else its text) where one matches, else the test's name. A failure weighs more than a
warning; both are DCGM's own verdict after running load on the GPU.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from fleetscope.collectors import knowledge
from fleetscope.collectors.detectors.base import Detector, where
from fleetscope.collectors.evidence import DRIVER_NUMBERING, Evidence, Finding
from fleetscope.collectors.knowledge import scoring


@cache
def _catalogue() -> tuple[dict[str, str], tuple[tuple[re.Pattern[str], dict[str, Any]], ...]]:
    data = knowledge.load("dcgm_diag.yaml")
    errors = tuple((re.compile(e["pattern"]), e) for e in data.get("errors", []))
    return dict(data.get("tests", {})), errors


def classify(test: str, message: str, error_id: int | None) -> tuple[str, dict[str, Any] | None]:
    """The layer a failed test points at and the DCGM error entry that decided it (or ``None``).

    Args:
        test: The test's name as dcgmi printed it.
        message: Its warnings joined (``""`` if none).
        error_id: The DCGM_FR number from ``dcgmi diag -j``, if any.
    """
    tests, errors = _catalogue()
    for pattern, entry in errors:
        if (error_id is not None and error_id in entry.get("codes", ())) or (
            message and pattern.search(message)
        ):
            return str(entry["layer"]), entry
    return tests.get(test.lower().replace("_", " "), "gpu_hardware"), None


class DcgmiDiagDetector(Detector):
    """Failed and warning ``dcgmi diag`` tests."""

    name = "dcgmi_diag"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        for e in evidence:
            if e.kind != "dcgm_diag":
                continue
            test = str(e.attrs.get("test", ""))
            message = str(e.attrs.get("message") or "")
            error_id = e.attrs.get("error_id")
            layer, entry = classify(test, message, error_id if isinstance(error_id, int) else None)
            failed = e.attrs.get("result") == "FAIL"
            place = where(e.node, e.gpu, e.gpu_pci_bus_id, bool(e.attrs.get(DRIVER_NUMBERING)))
            said = f": {message[:240]}" if message else ""
            if entry is not None:
                action = str(entry["action"])
            elif layer == "host_software":
                action = "fix the host software the test names, then rerun dcgmi diag"
            else:
                action = (
                    f"drain {e.node or 'the node'}; rerun dcgmi diag -r 3 on that GPU and replace it if the "
                    "test fails again"
                )
            yield Finding(
                kind=f"dcgm_diag:{test.lower().replace(' ', '_')}",
                layer=layer,
                role="cause",
                severity=e.severity,
                weight=scoring("dcgmi_diag.fail_weight") if failed else scoring("dcgmi_diag.warn_weight"),
                summary=f"dcgmi diag: the {test} test {'failed' if failed else 'warned'} on {place}{said}",
                action=action,
                node=e.node,
                gpu=e.gpu,
                gpu_pci_bus_id=e.gpu_pci_bus_id,
                evidence=[e],
                explains="gpu" if e.gpu is not None else "node",
            )
