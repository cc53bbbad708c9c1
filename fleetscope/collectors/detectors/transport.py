"""Collective-communication failures: InfiniBand/RoCE completions, EFA/libfabric, NCCL and c10d.

* ``NET/IB : Got completion ... with error N``: N is an ``ibv_wc_status`` (knowledge
  ``ib_wc_status.yaml``, from libibverbs ``verbs.h``); its entry gives meaning, layer and action, and
  whether it only reports an earlier failure (``IBV_WC_WR_FLUSH_ERR``).
* NET/OFI completion errors and libfabric ``err: N`` are ``fi_errno`` values; ``fi_getinfo()`` failing
  means no usable provider (EFA device absent from the container, EFA not enabled). Their layer, cause
  and action are the ``libfabric_errors.yaml`` entry's (network for provider and fabric faults,
  host_software where the host's configuration or driver install is at fault).
* NCCL result codes and the c10d watchdog timeout are symptoms: they say a collective failed or hung,
  not why. Where NCCL's init lines map every rank to its node and GPU (``rank N nranks M ... busId``),
  a watchdog timeout that one rank never reported is placed on that rank's GPU: the collective waited
  on it.
* An NCCL warning that no catalogue entry explains, printed before the same process's communicator
  reported ``Init COMPLETE``, did not stop NCCL (a transport it could not load, with a fallback that
  worked) and is not a fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from fleetscope.collectors import knowledge
from fleetscope.collectors.detectors.base import Detector, occurrences, where
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring

#: Most ranks one job is taken to have; rank numbers beyond it come from a garbled line, and listing the
#: ranks between would cost time and memory for nothing.
MAX_RANKS = 1 << 20


class TransportDetector(Detector):
    """IB/EFA transport errors (causes) and NCCL/c10d failures (symptoms)."""

    name = "transport"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        groups: dict[tuple[Any, ...], list[Evidence]] = {}
        ranks = _rank_map(evidence)
        inits = {
            (e.node, e.attrs["pid"], _position(e)[0]): _position(e)[1]
            for e in evidence
            if e.kind == "gpu_identity" and e.attrs.get("init_complete") and e.attrs.get("pid")
        }
        for e in evidence:
            if e.kind == "ib_completion_error":
                groups.setdefault(("ib", e.node, e.attrs["status"]), []).append(e)
            elif e.kind == "ofi_completion_error":
                groups.setdefault((e.kind, e.node, e.attrs["rc"]), []).append(e)
            elif e.kind == "ofi_call_failed":
                groups.setdefault((e.kind, e.node, e.attrs["call"]), []).append(e)
            elif e.kind == "libfabric_warn" and e.attrs.get("errno") is not None:
                groups.setdefault(("libfabric", e.node, e.attrs["errno"]), []).append(e)
            elif e.kind == "nccl_result":
                groups.setdefault(("result", None, e.attrs["result"]), []).append(e)
            elif e.kind == "c10d_watchdog_timeout":
                groups.setdefault(("watchdog", None, e.attrs["seq"]), []).append(e)
            elif e.kind == "nccl_failed_or_timed_out":
                groups.setdefault(("failed", None, None), []).append(e)
            elif e.kind == "nccl_tests_wrong_values" and e.attrs["count"]:
                groups.setdefault(("wrong_values", e.node, None), []).append(e)
            elif e.kind == "nccl_warn":
                groups.setdefault(("warn", e.node, e.attrs["message"][:60]), []).append(e)
        for (what, node, value), evs in groups.items():
            if what == "warn" and all(_survived(e, inits) for e in evs):
                finding = _finding(what, node, value, evs, benign=True)
            else:
                finding = _finding(what, node, value, evs)
            if finding is not None:
                if what == "watchdog":
                    _place_silent_rank(finding, evs, ranks)
                yield finding


def _position(e: Evidence) -> tuple[str, int]:
    file, _, line = e.source.rpartition(":")
    return file, int(line) if line.isdigit() else 0


def _survived(e: Evidence, inits: dict[tuple[Any, ...], int]) -> bool:
    """Whether the process that printed ``e`` later reported its communicator initialised."""
    file, line = _position(e)
    done = inits.get((e.node, e.attrs.get("pid"), file))
    return done is not None and done > line


def _rank_map(evidence: Sequence[Evidence]) -> dict[int, Evidence]:
    """Rank -> the NCCL init line that names its node and GPU (first one per rank)."""
    out: dict[int, Evidence] = {}
    for e in evidence:
        if e.kind == "gpu_identity" and e.attrs.get("nranks") and e.attrs.get("rank") is not None:
            out.setdefault(int(e.attrs["rank"]), e)
    return out


def _place_silent_rank(finding: Finding, evs: list[Evidence], ranks: dict[int, Evidence]) -> None:
    """Put a watchdog timeout on the one rank of the communicator that never reported it."""
    reported = {int(e.attrs["rank"]) for e in evs if e.attrs.get("rank") is not None}
    sizes = {int(e.attrs["nranks"]) for e in ranks.values()}
    if not reported or len(sizes) != 1:
        return
    size = sizes.pop()
    if not 0 < size <= MAX_RANKS:
        return  # a rank count no job has: a garbled line, not a communicator
    silent = set(range(size)) - reported
    if len(silent) != 1 or next(iter(silent)) not in ranks:
        return
    rank = silent.pop()
    where_ = ranks[rank]
    finding.node, finding.gpu, finding.gpu_pci_bus_id = where_.node, where_.gpu, where_.gpu_pci_bus_id
    finding.evidence = [*evs, where_]
    finding.summary += (
        f"; rank {rank} ({where(where_.node, where_.gpu, where_.gpu_pci_bus_id)}) is the only rank that "
        "never reported it, so the collective waited on it"
    )


def _finding(
    what: str, node: str | None, value: Any, evs: list[Evidence], benign: bool = False
) -> Finding | None:
    count = occurrences(evs)
    nodes = sorted({e.node for e in evs if e.node})
    on = f" on {', '.join(nodes)}" if nodes else ""
    if node is None and what in ("result", "failed") and len(nodes) == 1:
        node = nodes[0]  # an NCCL error raised on one node keeps the node of the file it came from
    # A transport fault stops collectives on every node of the job.
    common: dict[str, Any] = {"node": node, "evidence": evs, "count": count, "explains": "cluster"}
    if what == "ib":
        entry = knowledge.ib_wc_status(int(value)) or {}
        name = entry.get("name", f"status {value}")
        peers = sorted({str(e.attrs["peer"]) for e in evs if e.attrs.get("peer")})
        to = f" to peer {', '.join(peers)}" if peers else ""
        consequence = bool(entry.get("consequence_of_other"))
        return Finding(
            kind=f"ib_wc_status:{value}",
            layer=entry.get("layer", "network"),
            role="symptom" if consequence else "cause",
            severity=entry.get("severity", "error"),
            weight=scoring("transport.consequence_weight" if consequence else "transport.ib_cause_weight"),
            summary=f"InfiniBand/RoCE work completion failed{on}{to} with status {value} ({name}: "
            f"{entry.get('meaning', 'a status the verbs catalogue does not list')})" + _likely(entry),
            action=entry.get("action", "check the IB/RoCE path between the nodes (ibstat, port counters)"),
            **common,
        )
    if what == "ofi_call_failed":
        error = evs[0].attrs.get("error", "")
        entry = knowledge.libfabric_message(evs[0].text, error) or {}
        return Finding(
            kind=f"ofi_call_failed:{value}",
            layer=entry.get("layer", "network"),
            role="cause",
            severity="error",
            weight=scoring("transport.ofi_call_weight"),
            summary=f"The NCCL OFI plugin{on} found no usable libfabric provider ({value}: {error})"
            + _likely(entry),
            action=entry.get(
                "action",
                "run fi_info -p efa on the host and in the container and compare the providers listed",
            ),
            **common,
        )
    if what in ("ofi_completion_error", "libfabric"):
        prov = next((e.attrs.get("prov_err") for e in evs if e.attrs.get("prov_err")), "")
        prov_errno = next((e.attrs["prov_errno"] for e in evs if e.attrs.get("prov_errno") is not None), None)
        entry = (
            knowledge.libfabric_error("efa_prov_errno", prov_errno) if prov_errno is not None else None
        ) or (knowledge.libfabric_error("fi_errno", int(value)) or {})
        name = entry.get("name", f"fi_errno {value}")
        text = f" ({entry['text']})" if entry.get("text") else ""
        detail = (
            f", provider error {prov_errno if prov_errno is not None else prov}" if prov or prov_errno else ""
        )
        source = "An OFI (libfabric) request" if what == "ofi_completion_error" else "libfabric"
        return Finding(
            kind=f"fi_errno:{value}",
            layer=entry.get("layer", "network"),
            role="cause",
            severity="error",
            weight=scoring("transport.libfabric_weight"),
            summary=f"{source}{on} reported {name}{text} (RC {value}{detail}): "
            f"{entry.get('meaning', 'an error the libfabric catalogue does not list').rstrip('.')}"
            + _likely(entry),
            action=entry.get(
                "action",
                "look the error up in fi_errno(3) and the EFA provider's error table; check the EFA devices "
                "with fi_info -p efa and test the path with fi_pingpong between the nodes",
            ),
            **common,
        )
    if what == "result":
        entry = knowledge.nccl_result(str(value)) or {}
        return Finding(
            kind=f"nccl_result:{value}",
            layer=entry.get("layer", "framework"),
            role="symptom",
            severity="error",
            weight=scoring("transport.consequence_weight"),
            summary=f"NCCL reported {value}{on}: {entry.get('meaning', 'a collective failed')}",
            action=entry.get("action", "look for the transport or GPU error that preceded it on every node"),
            **common,
        )
    if what == "watchdog":
        ranks = sorted({int(e.attrs["rank"]) for e in evs if e.attrs.get("rank") is not None})
        # Ranks that never reported inside the range that did are where the collective stopped.
        span = ranks[-1] - ranks[0] if ranks else 0
        silent = sorted(set(range(ranks[0], ranks[-1] + 1)) - set(ranks)) if 0 < span <= MAX_RANKS else []
        hint = f"; rank(s) {', '.join(map(str, silent[:8]))} never reported" if 0 < len(silent) <= 8 else ""
        op = evs[0].attrs.get("op")
        timeout_s = int(evs[0].attrs.get("timeout_ms") or 0) / 1000
        return Finding(
            kind=f"c10d_watchdog_timeout:{value}",
            layer="framework",
            role="symptom",
            severity="error",
            weight=scoring("transport.watchdog_weight"),
            summary=f"{len(ranks) or count} ranks{on} hit the NCCL watchdog "
            f"({op} SeqNum {value} did not finish "
            f"within {timeout_s:.0f} s){hint}: some rank, GPU or link stopped progressing",
            action="find the rank that never reached this collective and the GPU or link under it",
            **common,
        )
    if what == "wrong_values":
        return Finding(
            kind="nccl_tests_wrong_values",
            layer=None,
            role="symptom",
            severity="error",
            weight=scoring("transport.wrong_values_weight"),
            summary=f"nccl-tests{on} received wrong values ({max(e.attrs['count'] for e in evs)} elements): "
            "data is corrupted somewhere between the GPUs (GPU memory, NVLink/PCIe or the network); "
            "which one is not established by this test alone",
            certainty="unsure",
            action="rerun per node (NVLink only) and across nodes to split the path, and run "
            "dcgmi diag -r 3 on the GPUs involved",
            **common,
        )
    if what == "failed":
        return Finding(
            kind="nccl_failed_or_timed_out",
            layer="framework",
            role="symptom",
            severity="error",
            weight=scoring("transport.failed_or_timed_out_weight"),
            summary=f"PyTorch reported failed or timed-out NCCL operations{on}",
            action="look for the underlying transport or GPU error",
            **common,
        )
    if what == "warn":
        message = evs[0].attrs.get("message", "")
        where_ = str(evs[0].attrs.get("where", ""))
        for pattern, entry in knowledge.nccl_messages():
            if pattern.search(message) and re.search(entry.get("where") or "", where_):
                cause = entry.get("role") == "cause"
                return Finding(
                    kind=f"nccl_warn:{entry['id']}",
                    layer=entry.get("layer", "framework"),
                    role="cause" if cause else "symptom",
                    severity="error",
                    weight=scoring(
                        "transport.nccl_warn_cause_weight" if cause else "transport.consequence_weight"
                    ),
                    summary=f"NCCL warned{on}: {message[:160]} ({entry.get('meaning', '').rstrip('.')}"
                    + _likely(entry)
                    + ")",
                    action=entry.get("action", ""),
                    **common,
                )
        return Finding(
            kind="nccl_warn",
            layer="framework",
            role="context" if benign else "symptom",
            severity="warning",
            weight=scoring("transport.uncatalogued_warn_weight"),
            summary=f"NCCL warned{on}: {message[:200]}",
            action="",
            **common,
        )
    return None


def _likely(entry: dict[str, Any]) -> str:
    """``"; likely cause: ..."`` from a catalogue entry, or ``""``: no cause is named without one."""
    cause = entry.get("likely_cause")
    return f"; likely cause: {cause}" if cause else ""
