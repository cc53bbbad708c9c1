"""Findings from reviewed log signatures (``collectors/knowledge/signatures.yaml``) and bare exceptions.

Each signature match becomes a finding with the signature's layer, role, weight, summary and action.
A kernel OOM kill whose victim PID is a DataLoader worker that PyTorch reported dead on the same node is
the input pipeline's fault (``data_pipeline``), not the job's memory request in general.
A Python exception that no other parser or signature explained on its line becomes a weak ``job``
cause: an unhandled error in the user's code is the best reading when nothing else is known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from fleetscope.collectors import knowledge
from fleetscope.collectors.detectors.base import Detector, Template, occurrences
from fleetscope.collectors.evidence import Evidence, Finding, Role
from fleetscope.collectors.knowledge import scoring

#: Exceptions that only report a failure elsewhere (collectives, the launcher); never a cause by themselves.
_RELAY_EXCEPTIONS = ("DistBackendError", "ChildFailedError", "DistStoreError", "DistNetworkError")
#: A signature's role as a finding's (``signatures.yaml`` uses the same words).
_ROLES: dict[str, Role] = {"cause": "cause", "symptom": "symptom", "context": "context"}
#: Signatures of a kernel OOM kill and of a DataLoader worker's death (``signatures.yaml``).
_OOM_KILL = "host_oom_killer"
_WORKER_DEATHS = ("dataloader_worker_killed", "dataloader_shm_bus_error")
_WORKER_OOM_SUMMARY = (
    "The kernel's OOM killer on {node} killed DataLoader worker {pid} ({process}): the input pipeline's "
    "workers exhausted the node's host memory"
)


def _pids(text: str) -> set[str]:
    return set(re.findall(r"\d+", text))


def _victims(evs: list[Evidence]) -> set[str]:
    """PIDs the OOM killer names in one group's lines."""
    return {p for e in evs for p in _pids(str(e.attrs.get("groups", {}).get("pid", "")))}


def _dataloader_worker_pids(groups: dict[tuple[Any, ...], list[Evidence]]) -> dict[str | None, set[str]]:
    """PIDs of DataLoader workers reported dead, per node (PyTorch names them in its error)."""
    out: dict[str | None, set[str]] = {}
    for (sig_id, node, _, _), evs in groups.items():
        if sig_id in _WORKER_DEATHS:
            out.setdefault(node, set()).update(_victims(evs))
    return out


class LogSignatureDetector(Detector):
    """Signature matches and unexplained exceptions."""

    name = "log_signatures"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        by_id = {s.id: s for s in knowledge.signatures()}
        groups: dict[tuple[Any, ...], list[Evidence]] = {}
        explained_lines: set[str] = set()
        for e in evidence:
            if e.kind == "exception":
                continue
            explained_lines.add(e.source)
            if e.kind == "signature" and e.attrs["signature"] in by_id:
                groups.setdefault((e.attrs["signature"], e.node, e.gpu, e.gpu_pci_bus_id), []).append(e)
        worker_pids = _dataloader_worker_pids(groups)
        for (sig_id, node, gpu, bus), evs in groups.items():
            sig = by_id[sig_id]
            if sig_id == _OOM_KILL and _victims(evs) & worker_pids.get(node, set()):
                # The OOM killer chose a DataLoader worker: the input pipeline is what outgrew the node.
                sig = replace(
                    sig,
                    layer="data_pipeline",
                    summary=_WORKER_OOM_SUMMARY,
                    weight=sig.weight + scoring("log_signatures.worker_oom_bonus"),
                )
            fields = Template(
                node=node or "an unknown node", gpu=gpu if gpu is not None else "?", bus=bus or "?"
            )
            for e in evs:
                fields.update({k: v for k, v in e.attrs.get("groups", {}).items() if k not in fields or v})
            yield Finding(
                kind=f"signature:{sig_id}",
                layer=sig.layer,
                role=_ROLES.get(sig.role, "cause"),
                severity=sig.severity,
                weight=sig.weight,
                summary=sig.summary.format_map(fields),
                action=sig.action.format_map(fields),
                node=node,
                gpu=gpu,
                gpu_pci_bus_id=bus,
                evidence=evs,
                explains="node",
                count=occurrences(evs),
                from_anywhere=sig.scope == "anywhere",
            )
        yield from _cuda_findings(evidence)
        for e in evidence:
            if e.kind != "exception" or e.source in explained_lines:
                continue
            if e.attrs["type"] in _RELAY_EXCEPTIONS:
                continue
            yield Finding(
                kind=f"exception:{e.attrs['type']}",
                layer="job",
                role="cause",
                severity="error",
                weight=scoring("log_signatures.exception_weight"),
                summary=(
                    f"The job on {e.node or 'an unknown node'} raised {e.attrs['type']}: "
                    f"{e.attrs['message'][:200]}"
                ),
                action="read the traceback around this line; fix the code or configuration it points at",
                node=e.node,
                gpu=e.gpu,
                evidence=[e],
                explains="node",
            )


def _cuda_findings(evidence: Sequence[Evidence]) -> Iterable[Finding]:
    entries = {e["name"]: e for e in knowledge.cuda_errors()}
    groups: dict[tuple[Any, ...], list[Evidence]] = {}
    for e in evidence:
        if e.kind == "cuda_error" and e.attrs["name"] in entries:
            groups.setdefault((e.attrs["name"], e.node, e.gpu), []).append(e)
    for (name, node, gpu), evs in groups.items():
        entry = entries[name]
        cause = entry.get("role") == "cause"
        place = f"GPU {gpu} on {node}" if gpu is not None else (node or "an unknown node")
        yield Finding(
            kind=f"cuda_error:{name}",
            layer=entry.get("layer"),
            role="cause" if cause else "symptom",
            severity="error",
            weight=scoring(
                "log_signatures.cuda_cause_weight" if cause else "log_signatures.cuda_symptom_weight"
            ),
            summary=f"CUDA reported {name} on {place}: {entry.get('meaning', '')}".strip(),
            action=entry.get("action", ""),
            node=node,
            gpu=gpu,
            evidence=evs,
            explains="node",
            count=occurrences(evs),
        )
