"""Connections lost and restored: a blip is context, a loss that stays (or hurts) is a cause.

A Lustre import, an NFS server or a network link that is lost and restored within
``connections.recovery_window_s`` (``scoring.yaml``; or restored, where the log gives no times to measure
by) is context: clients retry, I/O resumes, nothing failed. It is an incident when it is not restored,
when it took longer, or when something on the same node suffered meanwhile (an error or worse from another
source between the loss and ``connections.downstream_window_s`` after it came back: a hung task, an I/O
error, a timeout).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fleetscope.collectors.detectors.base import Detector
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.timestamps import split_timestamp, with_year

#: Per subsystem: layer, what it blocks, what to check (weights in ``scoring.yaml``, ``connections``).
SUBSYSTEMS: dict[str, tuple[str, str, str]] = {
    "lustre": (
        "storage",
        "file I/O on that filesystem blocks until recovery completes",
        "check the Lustre OSS/MDS named and the network to it (lctl ping); I/O resumes after recovery",
    ),
    "nfs": (
        "storage",
        "reads and writes on its mounts (checkpoints, data) block",
        "check the NFS server and the network path to it; processes stuck in D state resume or fail once it "
        "answers",
    ),
    "link": (
        "network",
        "traffic on that interface stops",
        "check the interface's cable, transceiver and switch port (ethtool, ibstat, the switch's log)",
    ),
}


def _clock(e: Evidence) -> tuple[str, float] | None:
    """When ``e`` happened, on a clock it can be compared on: UTC, a year-less syslog stamp read in a
    fixed leap year (differences only), or the kernel's uptime (per file)."""
    if e.time is not None:
        return "utc", e.time.timestamp()
    if e.time_raw:
        stamp, _ = split_timestamp(e.time_raw + " ")
        when = with_year(stamp, 2000) if stamp is not None and stamp.yearless else None
        if when is not None:
            return "syslog", when.timestamp()
    uptime = e.attrs.get("uptime_s")
    if isinstance(uptime, int | float):
        return "uptime:" + _position(e)[0], float(uptime)
    return None


def _between(a: Evidence, b: Evidence) -> float | None:
    """Seconds from ``a`` to ``b``, or ``None`` where their clocks differ."""
    ca, cb = _clock(a), _clock(b)
    if ca is None or cb is None or ca[0] != cb[0]:
        return None
    return cb[1] - ca[1]


def _position(e: Evidence) -> tuple[str, int]:
    file, _, line = e.source.rpartition(":")
    return file, int(line) if line.isdigit() else 0


class ConnectionLossDetector(Detector):
    """Lustre, NFS and link losses, told apart from blips that recovered."""

    name = "connections"
    sees_all = True  # an error on the node after the recovery keeps the fault a cause

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        events: dict[tuple[Any, ...], list[Evidence]] = {}
        for e in evidence:
            if e.kind == "connection_event" and e.attrs.get("subsystem") in SUBSYSTEMS:
                events.setdefault((e.node, e.attrs["subsystem"], e.attrs.get("target")), []).append(e)
        for (node, subsystem, target), evs in events.items():
            evs.sort(key=_position)
            losses = [e for e in evs if e.attrs.get("state") == "lost"]
            if not losses:
                continue
            first = losses[0]
            restored = next(
                (e for e in evs if e.attrs.get("state") == "restored" and _after(e, losses[-1])), None
            )
            took = _took(losses[0], restored)
            recovered = restored is not None and (
                took is None or took <= scoring("connections.recovery_window_s")
            )
            hurt = suffered(evidence, node, first, restored)
            layer, blocks, action = SUBSYSTEMS[subsystem]
            weight = {
                "lustre": scoring("connections.lustre_weight"),
                "nfs": scoring("connections.nfs_weight"),
                "link": scoring("connections.link_weight"),
            }[subsystem]
            server = next((str(e.attrs["server"]) for e in evs if e.attrs.get("server")), "")
            what = f"{subsystem} {target}" + (f" (server {server})" if server and server != target else "")
            if recovered and not hurt:
                yield Finding(
                    kind=f"connection_blip:{subsystem}",
                    layer=layer,
                    role="context",
                    severity="warning",
                    weight=scoring("connections.blip_weight"),
                    summary=f"{node} lost {what} and got it back"
                    + (f" after {took:.0f} s" if took is not None else "")
                    + ": a blip that recovered, with nothing on the node failing meanwhile",
                    action="",
                    node=node,
                    evidence=[first, restored] if restored is not None else [first],
                    explains="node",
                    count=len(losses),
                )
                continue
            if restored is None:
                state = "and did not get it back in the bundle"
            elif hurt:
                state = f"and got it back, but {hurt.kind.replace('_', ' ')} on the node followed"
            else:
                state = f"for {took:.0f} s before it came back"
            yield Finding(
                kind=f"connection_lost:{subsystem}",
                layer=layer,
                role="cause",
                severity="error",
                weight=weight,
                summary=f"{node} lost {what} {state}: {blocks}",
                action=action,
                node=node,
                evidence=[e for e in (first, restored, hurt) if e is not None],
                explains="node",
                count=len(losses),
                certainty="likely",  # a lost mount or link stops the job, but may itself be a consequence
            )


def _after(later: Evidence, earlier: Evidence) -> bool:
    gap = _between(earlier, later)
    if gap is not None:
        return gap >= 0
    return _position(later) > _position(earlier)


def _took(lost: Evidence, restored: Evidence | None) -> float | None:
    gap = _between(lost, restored) if restored is not None else None
    return max(0.0, gap) if gap is not None else None


def suffered(
    evidence: Sequence[Evidence],
    node: str | None,
    lost: Evidence,
    restored: Evidence | None,
    own_kind: str = "connection_event",
) -> Evidence | None:
    """What suffered from a loss that may have recovered: the first error or worse on ``node`` after it.

    Args:
        evidence: All evidence of the bundle.
        node: The node of the loss.
        lost: The evidence of the loss.
        restored: The evidence of its recovery, or ``None``.
        own_kind: The loss's own evidence kind, never counted as what suffered.

    Returns:
        The first error-or-worse evidence of another kind on ``node`` from the loss until
        ``connections.downstream_window_s`` after the recovery (where the clocks compare; from another file
        without comparable times, any), or ``None``.
    """
    for e in evidence:
        if e.node != node or e.kind == own_kind or e.severity not in ("error", "critical"):
            continue
        since = _between(lost, e)
        if since is not None:
            after_end = _between(restored, e) if restored is not None else None
            if since < 0 or (
                after_end is not None and after_end > scoring("connections.downstream_window_s")
            ):
                continue
        elif _position(e)[0] == _position(lost)[0] and not _after(e, lost):
            continue  # earlier in the same file; from another file without comparable times: counted
        return e
    return None
