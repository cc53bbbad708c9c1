"""The EFA software stack: provider aborts and aws-ofi-nccl failures.

* ``efa_abort`` (the provider's "encountered an internal error" banner) and ``ofi_warn`` (an aws-ofi-nccl
  ``NET/OFI`` warning) are causes in the network layer, the EFA software stack (docs/design.md: EFA
  belongs to network), on the node that printed them. Their meaning and action come from
  ``libfabric_errors.yaml`` (the EFA provider error table, the ``fi_errno`` table, the aws-ofi-nccl
  message shapes).
* EFA registers every buffer it sends from, which needs the locked-memory limit raised (the AWS EFA user
  guide asks for ``unlimited``). Where the same node's ``memlock_limit`` evidence shows a finite limit
  and the failure is a memory or registration one, the finding says so and its action raises the limit;
  without that evidence the action only asks to check it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fleetscope.collectors import knowledge
from fleetscope.collectors.detectors.base import Detector, occurrences
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring

#: Errors that a locked-memory limit can cause: ENOMEM, EFA's own out-of-memory, registration failures.
_MEMORY_FI_ERRNOS = frozenset({12})
_MEMORY_WORDS = ("memory", "regist", "MR ")


class EfaDetector(Detector):
    """EFA provider aborts and aws-ofi-nccl failures."""

    name = "efa"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        memlock: dict[str | None, Evidence] = {}
        groups: dict[tuple[Any, ...], list[Evidence]] = {}
        for e in evidence:
            if e.kind == "memlock_limit":
                limit = e.attrs.get("limit_bytes")
                if isinstance(limit, int) and limit < scoring("efa.memlock_enough_bytes"):
                    memlock.setdefault(e.node, e)
            elif e.kind == "efa_abort":
                key = ("abort", e.node, e.attrs.get("fi_errno"), e.attrs.get("efa_prov_errno"))
                groups.setdefault(key, []).append(e)
            elif e.kind == "ofi_warn":
                groups.setdefault(("ofi", e.node, str(e.attrs.get("message", ""))[:60]), []).append(e)
        for (what, node, *_), evs in groups.items():
            yield self._abort(node, evs, memlock) if what == "abort" else self._ofi(node, evs, memlock)

    @staticmethod
    def _abort(node: str | None, evs: list[Evidence], memlock: dict[str | None, Evidence]) -> Finding:
        first = evs[0]
        fi, prov = first.attrs.get("fi_errno"), first.attrs.get("efa_prov_errno")
        fi_entry = knowledge.libfabric_error("fi_errno", fi) if isinstance(fi, int) else None
        prov_entry = knowledge.libfabric_error("efa_prov_errno", prov) if isinstance(prov, int) else None
        entry = prov_entry or fi_entry or {}
        parts = []
        if fi is not None:
            parts.append(
                f"libfabric error {fi} ({first.attrs.get('fi_error') or (fi_entry or {}).get('text')})"
            )
        if prov is not None:
            parts.append(
                f"EFA internal error {prov} ({first.attrs.get('efa_prov_error') or entry.get('message', '')})"
            )
        said = ", ".join(parts) or "no error code printed"
        meaning = f": {str(entry['meaning']).rstrip('.')}" if entry.get("meaning") else ""
        memory = fi in _MEMORY_FI_ERRNOS or any(
            w in str(first.attrs.get("efa_prov_error", "")) for w in _MEMORY_WORDS
        )
        summary = f"The EFA provider aborted the process on {node or 'an unknown node'} ({said}){meaning}"
        action = entry.get("action") or "read the libfabric warnings before the abort (FI_LOG_LEVEL=warn)"
        summary, action = _with_memlock(summary, action, node, memory, memlock, evs)
        return _fault(f"efa_abort:{prov if prov is not None else fi}", node, evs, summary, action)

    @staticmethod
    def _ofi(node: str | None, evs: list[Evidence], memlock: dict[str | None, Evidence]) -> Finding:
        first = evs[0]
        message = str(first.attrs.get("message", ""))
        rc = first.attrs.get("rc")
        entry = knowledge.libfabric_message(first.text, str(first.attrs.get("error") or "")) or (
            knowledge.libfabric_error("fi_errno", rc) if isinstance(rc, int) else None
        )
        entry = entry or {}
        code = f" (RC {rc}: {entry.get('name', 'fi_errno')}, {entry.get('text') or entry.get('meaning', '')})"
        memory = rc in _MEMORY_FI_ERRNOS or "regist" in message
        summary = f"The NCCL OFI plugin (aws-ofi-nccl, EFA) failed on {node or 'an unknown node'}: " + (
            message[:200] + (code if rc is not None else "")
        )
        action = entry.get("action") or "run fi_info -p efa on the node and read the libfabric warnings"
        summary, action = _with_memlock(summary, action, node, memory, memlock, evs)
        return _fault(f"ofi_warn:{entry.get('id') or entry.get('name') or rc}", node, evs, summary, action)


def _fault(kind: str, node: str | None, evs: list[Evidence], summary: str, action: str) -> Finding:
    """A fault the EFA stack states on its node: the network layer's cause, explaining the job's symptoms."""
    return Finding(
        kind=kind,
        layer="network",
        role="cause",
        severity="error",
        weight=scoring("efa.fault_weight"),
        summary=summary,
        action=action,
        node=node,
        evidence=evs,
        explains="cluster",
        count=occurrences(evs),
    )


def _with_memlock(
    summary: str,
    action: str,
    node: str | None,
    memory: bool,
    memlock: dict[str | None, Evidence],
    evs: list[Evidence],
) -> tuple[str, str]:
    """Add the node's finite locked-memory limit to a memory or registration failure, where shown."""
    if not memory:
        return summary, action
    limit = memlock.get(node)
    if limit is None:
        return (
            summary,
            action + "; check the job's locked-memory limit (ulimit -l), which EFA needs unlimited",
        )
    evs.append(limit)
    kib = int(limit.attrs["limit_bytes"]) // 1024
    return (
        f"{summary}; the locked-memory limit on {node} is {kib} KiB, not unlimited, and EFA must lock "
        "every buffer it registers",
        "raise the locked-memory limit to unlimited for the job (limits.conf memlock, "
        "container --ulimit memlock=-1, Slurm PropagateResourceLimits) and rerun",
    )
