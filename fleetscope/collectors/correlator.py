"""Findings to ranked root causes: cause and effect, not keyword counts.

Rules, in order:

1. **Same-GPU chains.** On one GPU, a fault the Xid catalogue attributes to the application (Xid 13, 31,
   43 ...) explains a later driver- or system-origin Xid (Xid 109 context-switch timeout after an Xid 13):
   the later one becomes a symptom. A hardware or firmware fault on that GPU stays a cause and, carrying
   more weight, outranks the application fault, but the order of events leaves open which one started
   it, so its confidence is capped and its summary says so.
2. **Symptoms need causes.** Watchdog timeouts, NCCL result codes, Xid 45/154, a driver nvidia-smi cannot
   reach: each is attached to the strongest cause whose scope covers it (the same GPU, node, or the
   whole job) and listed under ``symptoms``. A symptom that echoes a failure elsewhere (a peer closed
   its socket) may be explained by a cause on any node. Where the topology (the ``_info`` series of a
   live window or a bundle: :class:`~fleetscope.collectors.topology.Topology`) names the jobs of both
   nodes, a cause explains only symptoms on nodes of its own job: one job's fault does not hang
   another's ranks. A node no job is known on (a bundle without job records, a dead node whose series
   are gone) keeps the scope rule alone.
3. **Ranking.** Causes rank by their prior weight (from reviewed knowledge), with small bonuses for
   corroboration from several sources and for explaining symptoms; several GPUs of one node with the same
   fault are reported once, listing the GPUs: for the node (no GPU named) where they are all the GPUs the
   topology knows there, else with the first GPU standing for them.
4. **A user's stop is no fault.** Where the user stopped the run (Ctrl-C, SIGINT), the GPU channels
   the driver tears down under the killed processes (application Xids the catalogue rates a warning, e.g.
   Xid 43 "GPU stopped processing") on that node are the stop's trace, not an incident.
5. **No cause.** Symptoms alone still make an incident, but the answer is the most telling symptom with a
   low confidence, ``unsure``, and a summary that says the cause was not found. No findings:
   ``incident: false``.
6. **Certainty.** Each root cause carries ``established``, ``likely`` or ``unsure``: from its confidence
   (thresholds in ``knowledge/scoring.yaml``), never above what its detector allows (a test that cannot
   say where corruption happened is ``unsure`` however strong).

The correlator does not modify the findings it is given: it works on copies, so investigating the same
findings twice gives the same answer. Weights and thresholds are ``knowledge/scoring.yaml``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from fleetscope.collectors.detectors.base import gpu_key, where
from fleetscope.collectors.detectors.host_software import KERNEL_STALL
from fleetscope.collectors.evidence import CERTAINTIES, Certainty, Finding
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.topology import Topology

#: Origins whose faults a same-GPU application fault explains (rule 1).
_EXPLAINABLE_ORIGINS = ("driver", "system", "consequence")
#: Kind of the context finding that says the user stopped the run (rule 4).
USER_STOP = "signature:user_interrupt"
#: At most this many of the merged GPUs' own summaries are repeated in a merged cause's summary.
_SUMMARIES_SHOWN = 3


@dataclass(slots=True)
class RankedCause:
    """A root cause with its score and the symptoms it explains."""

    finding: Finding
    score: float
    confidence: float = 0.0
    certainty: Certainty = "unsure"
    explains: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class Correlation:
    """The correlator's verdict.

    Attributes:
        incident: Whether the findings show a fault.
        causes: Root causes, best first.
        symptoms: Symptoms, each with the index in ``causes`` of what explains it (or ``None``).
    """

    incident: bool
    causes: list[RankedCause]
    symptoms: list[tuple[Finding, int | None]]


def correlate(findings: list[Finding], topology: Topology | None = None) -> Correlation:
    """Rank root causes and attach symptoms to them.

    Args:
        findings: Every detector's findings for one bundle or window (not modified).
        topology: The cluster's map where known (rule 2: symptoms stay within a job), or None.

    Returns:
        The verdict; ``causes`` is empty only when ``incident`` is false.
    """
    findings = [replace(f, evidence=list(f.evidence)) for f in findings]
    stopped = {f.node for f in findings if f.kind == USER_STOP}
    stalls = [f for f in findings if f.kind == KERNEL_STALL]
    causes = [f for f in findings if f.role == "cause" and not _stop_trace(f, stopped)]
    symptoms = [f for f in findings if f.role == "symptom"]
    causes, demoted, ambiguous = _same_gpu_chains(causes)
    symptoms = demoted + symptoms
    causes = _merge_gpus(causes, topology)
    if not causes and not symptoms:
        return Correlation(incident=False, causes=[], symptoms=[])
    if not causes:
        best = max(symptoms, key=lambda f: (f.weight, f.layer is not None))
        best.summary += "; the bundle holds no evidence of what caused it"
        confidence = min(scoring("correlator.symptom_confidence"), best.weight)
        ranked = [RankedCause(finding=best, score=best.weight, confidence=confidence, certainty="unsure")]
        rest = [s for s in symptoms if s is not best]
        return Correlation(incident=True, causes=ranked, symptoms=[(s, 0) for s in rest])
    ranked = [RankedCause(finding=c, score=_score(c)) for c in causes]
    owners: dict[int, RankedCause] = {}
    for s in symptoms:
        covering = [r for r in ranked if _covers(r.finding, s, topology)]
        if covering:
            owners[id(s)] = max(covering, key=lambda r: r.score)
            owners[id(s)].explains.append(s)
    for r in ranked:
        if r.explains:
            r.score += scoring("correlator.explains_bonus")
    ranked.sort(key=lambda r: (-r.score, _first_time_key(r.finding)))
    position = {id(r): i for i, r in enumerate(ranked)}
    attached = [(s, position[id(owners[id(s)])] if id(s) in owners else None) for s in symptoms]
    for i, r in enumerate(ranked):
        r.confidence = _confidence(r, ranked[i + 1] if i + 1 < len(ranked) else None)
        first_app = ambiguous.get(id(r.finding))
        stall = _stall_after(r.finding, stalls)
        if stall is not None:
            r.confidence = min(r.confidence, scoring("correlator.ambiguous_confidence"))
            r.finding.summary += (
                f"; the kernel then stalled ({stall.evidence[0].attrs['what']}), which an application alone "
                "cannot cause, so whether the application, the driver or the hardware is at fault is not "
                "established"
            )
        elif first_app is not None:
            r.confidence = min(r.confidence, scoring("correlator.ambiguous_confidence"))
            r.finding.summary += (
                f"; an application fault ({first_app.kind.replace(':', ' ')}) came first on the same GPU, so "
                "whether the application, the driver or the hardware started it is not established"
            )
        r.certainty = certainty(r.confidence, r.finding.certainty, stall is not None or first_app is not None)
    return Correlation(incident=True, causes=ranked, symptoms=attached)


def certainty(confidence: float, ceiling: Certainty | None = None, doubted: bool = False) -> Certainty:
    """Rule 6: the certainty a root cause earns.

    Args:
        confidence: Its confidence, 0-1.
        ceiling: The finding's own ``certainty`` (``None``: no limit).
        doubted: The correlator found a reason to doubt it (rule 1's order of events, a kernel stall).

    Returns:
        ``unsure`` when doubted, limited by the detector, or below ``certainty.likely``; ``established``
        from ``certainty.established`` up; ``likely`` between.
    """
    if doubted or confidence < scoring("certainty.likely"):
        return "unsure"
    earned: Certainty = "established" if confidence >= scoring("certainty.established") else "likely"
    if ceiling is not None and CERTAINTIES.index(ceiling) > CERTAINTIES.index(earned):
        return ceiling
    return earned


def _stall_after(f: Finding, stalls: list[Finding]) -> Finding | None:
    """A kernel stall on the node of an application Xid, no earlier than it (where both are dated).

    A user process cannot hang the kernel: a soft lockup or RCU stall after an application fault points
    at the driver (or the GPU under it) as much as at the application.
    """
    if not (f.kind.startswith("xid:") and f.origin == "application"):
        return None
    start = f.time
    for s in stalls:
        when = s.time
        if s.node == f.node and (start is None or when is None or when >= start):
            return s
    return None


def _stop_trace(f: Finding, stopped: set[str | None]) -> bool:
    """Rule 4: an application Xid of warning severity on a node whose user stopped the run."""
    return (
        f.node in stopped
        and f.kind.startswith("xid:")
        and f.origin == "application"
        and f.severity in ("warning", "info")
    )


def _same_gpu_chains(
    causes: list[Finding],
) -> tuple[list[Finding], list[Finding], dict[int, Finding]]:
    """Apply rule 1.

    Returns:
        The remaining causes, the demoted ones, and (by ``id``) hardware causes an app fault preceded.
    """
    by_gpu: dict[tuple[object, object], list[Finding]] = {}
    for c in causes:
        if c.kind.startswith("xid:") and gpu_key(c)[1] is not None:
            by_gpu.setdefault(gpu_key(c), []).append(c)
    demoted: list[Finding] = []
    ambiguous: dict[int, Finding] = {}
    for group in by_gpu.values():
        apps = sorted((c for c in group if c.origin == "application"), key=_first_time_key)
        if not apps:
            continue
        first_app = _first_time_key(apps[0])
        for c in group:
            if c.origin == "application" or _first_time_key(c) < first_app:
                continue
            if c.origin in _EXPLAINABLE_ORIGINS:
                c.role = "symptom"
                demoted.append(c)
            else:
                ambiguous[id(c)] = apps[0]
    return [c for c in causes if c.role == "cause"], demoted, ambiguous


def _merge_gpus(causes: list[Finding], topology: Topology | None) -> list[Finding]:
    """Report one fault seen on several GPUs of one node once, for the node, naming every GPU.

    Where the fault is on every GPU the topology knows on the node (every rank of the node held up by
    its storage, a node-wide power brake), the merged cause names no GPU: the node is the place to look,
    and an incident kept by its place must not move with whichever GPU sorts first. On some of its GPUs,
    or where the topology knows none (a bundle without ``_info`` series), the lowest-index GPU stands
    for the group where one location is asked for.
    """
    groups: dict[tuple[str, str | None, str | None], list[Finding]] = {}
    for c in causes:
        groups.setdefault((c.kind, c.node, c.layer), []).append(c)
    out: list[Finding] = []
    for (_, node, _), group in groups.items():
        located = [c for c in group if c.gpu is not None or c.gpu_pci_bus_id]
        if len(located) < 2 or len({gpu_key(c) for c in located}) < 2:
            out.extend(group)
            continue
        best = max(group, key=lambda c: c.weight)
        located.sort(key=lambda c: (c.gpu is None, c.gpu or 0, c.gpu_pci_bus_id or ""))
        gpus = "; ".join(where(None, c.gpu, c.gpu_pci_bus_id) for c in located)
        known = topology.gpus_of(node) if topology is not None and node is not None else set()
        whole = bool(known) and known <= {c.gpu for c in located}
        actions = list(dict.fromkeys(c.action for c in located if c.action))
        said = list(dict.fromkeys(c.summary for c in located))
        # A few GPUs' own words stand for the rest (eight ranks of one node say the same eight times).
        more = f"; and {len(said) - _SUMMARIES_SHOWN} more like these" if len(said) > _SUMMARIES_SHOWN else ""
        out.append(
            replace(
                best,
                summary=f"The same fault on {len(located)} GPUs of {node} ({gpus}): "
                + "; ".join(said[:_SUMMARIES_SHOWN])
                + more,
                action=" | ".join(actions),
                gpu=None if whole else located[0].gpu,
                gpu_pci_bus_id=None if whole else located[0].gpu_pci_bus_id,
                evidence=[e for c in group for e in c.evidence],
                count=sum(c.count for c in group),
            )
        )
    return out


def _covers(cause: Finding, symptom: Finding, topology: Topology | None) -> bool:
    if not _same_job(cause, symptom, topology):
        return False
    if cause.explains == "cluster" or symptom.from_anywhere:
        return True
    if cause.explains == "node":
        return symptom.node is None or cause.node is None or symptom.node == cause.node
    return gpu_key(cause) == gpu_key(symptom)


def _same_job(cause: Finding, symptom: Finding, topology: Topology | None) -> bool:
    """Rule 2: whether the two nodes share a job, or the topology cannot tell (no map, a node unnamed or
    on no known job)."""
    if topology is None or cause.node is None or symptom.node is None:
        return True
    ours, theirs = topology.jobs_of(cause.node), topology.jobs_of(symptom.node)
    return not ours or not theirs or bool(ours & theirs)


def _score(f: Finding) -> float:
    sources = len({e.source.rsplit(":", 1)[0] for e in f.evidence})
    return (
        f.weight
        + scoring("correlator.source_bonus") * min(2, sources - 1)
        + scoring("correlator.count_bonus") * min(2.0, math.log10(max(f.count, 1)))
    )


def _confidence(r: RankedCause, runner_up: RankedCause | None) -> float:
    confidence = min(scoring("correlator.max_confidence"), r.score)
    if (
        runner_up is not None
        and runner_up.finding.layer != r.finding.layer
        and r.score - runner_up.score < scoring("correlator.close_margin")
    ):
        confidence *= scoring("correlator.close_factor")
    return round(confidence, 2)


def _first_time_key(f: Finding) -> tuple[int, float, str]:
    """Order by time where known; otherwise by source position (file, then line)."""
    t = f.time
    first = f.evidence[0] if f.evidence else None
    uptime = float(first.attrs.get("uptime_s") or 0.0) if first else 0.0
    if t is not None:
        return (0, t.timestamp(), "")
    src = first.source if first else ""
    file, _, line = src.rpartition(":")
    return (1, uptime or float(line or 0), file)
