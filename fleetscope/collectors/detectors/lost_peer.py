"""A peer that went away: named by the errors of the nodes that talked to it.

When a node dies (its process, its adapter, the whole host), every node that was sending to it logs an
error naming it, and those errors are what a bundle is full of. The cause is the peer, not the many
nodes that logged it. Read here:

* ``transport_peer_error`` with ``gone`` (EFA: "Unresponsive receiver", "Unreachable remote", "reset by
  remote peer", naming the peer's host id and EFA address);
* ``ib_completion_error`` with status 12 or 13 (``IBV_WC_RETRY_EXC_ERR``, ``IBV_WC_RNR_RETRY_EXC_ERR``:
  the remote side never acknowledged) and the peer's address (``Got completion from peer 10.0.0.5<...>``);
* ``nccl_warn`` from NCCL's sockets naming the peer (connection closed by it, or it cannot be reached).

Where at least ``lost_peer.min_reporters`` (``scoring.yaml``) nodes name the same peer, the peer is a
cause in the network layer (the path to it is what failed, whatever killed it). It is mapped to a node of
the bundle through that node's own host id (EFA's "My host id"), its NCCL bootstrap address
(``host_address``), a node folder named like it, or an AWS host name that spells the address
(``ip-10-0-0-5``); otherwise the finding names the peer as written. One reporter alone cannot tell which
end failed: its own findings stand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector, occurrences
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring

#: ibv_wc_status values that mean the remote side stopped answering (libibverbs verbs.h).
_PEER_SILENT_STATUSES = frozenset({12, 13})
_AWS_NAME = re.compile(r"^ip-(\d+)-(\d+)-(\d+)-(\d+)(?:\.|$)")


#: NCCL's socket messages that name the peer (src/misc/socket.cc): ``Connection closed by remote peer
#: node-05.cluster<46114>``, ``Connect to 10.0.0.5<36531> failed : No route to host``.
_SOCKET_PEER = re.compile(
    r"(?:Connection closed by remote peer (?P<closed>[^\s<]+)<\d+>"
    r"|Connect to (?P<connect>[^\s<]+)<\d+> failed\s*:\s*(?:No route to host|Connection timed out"
    r"|Network is unreachable|Connection refused))"
)


#: The kinds :func:`_peer` reads a peer from (the detector sees every item of a bundle or window).
_NAMING_KINDS = frozenset({"nccl_warn", "transport_peer_error", "ib_completion_error"})


def _peer(e: Evidence) -> str | None:
    if e.kind == "nccl_warn":
        m = _SOCKET_PEER.search(str(e.attrs.get("message", "")))
        return (m["closed"] or m["connect"]) if m else None
    if e.kind == "transport_peer_error" and e.attrs.get("gone"):
        return str(e.attrs["peer"]) if e.attrs.get("peer") else None
    if (
        e.kind == "ib_completion_error"
        and e.attrs.get("status") in _PEER_SILENT_STATUSES
        and e.attrs.get("peer")
    ):
        return str(e.attrs["peer"]).split("<", 1)[0]  # "10.0.0.5<39138>": the address without the port
    return None


class LostPeerDetector(Detector):
    """The peer that several nodes' transport errors name."""

    name = "lost_peer"
    sees_all = True  # a peer is mapped to a node of the bundle, whatever evidence made it one

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        peers: dict[str, list[Evidence]] = {}
        for e in evidence:
            peer = _peer(e) if e.kind in _NAMING_KINDS else None
            if peer is not None:
                peers.setdefault(peer, []).append(e)
        if not peers:
            return
        names = _node_names(evidence)
        for peer, evs in peers.items():
            reporters = sorted({e.node for e in evs if e.node})
            node = names.get(peer)
            if len([r for r in reporters if r != node]) < scoring("lost_peer.min_reporters"):
                continue
            named = f"{node} ({peer})" if node and node != peer else peer
            yield Finding(
                kind="lost_peer",
                layer="network",
                role="cause",
                severity="error",
                weight=scoring("lost_peer.weight"),
                summary=f"{len(reporters)} nodes ({', '.join(reporters[:8])}) lost their peer {named}: "
                f"'{_said(evs[0])}'; the peer's process, adapter or host went away, and the nodes reporting "
                "it are not at fault",
                action=f"check {named}: whether its training process is alive (exit code, OOM kill), its "
                "kernel log and its adapters' counters; drain and replace it if its hardware failed",
                node=node or peer,
                evidence=evs[:10],
                explains="cluster",
                count=occurrences(evs),
                certainty="likely",  # the peer is named by others; what took it away is not in their logs
            )


def _said(e: Evidence) -> str:
    if e.kind == "transport_peer_error":
        return str(e.attrs.get("message", ""))[:120]
    return f"InfiniBand completion status {e.attrs.get('status')} from peer {e.attrs.get('peer')}"


def _node_names(evidence: Sequence[Evidence]) -> dict[str, str]:
    """Host ids and addresses -> the node folder they belong to."""
    names: dict[str, str] = {}
    nodes = {e.node for e in evidence if e.node}
    for e in evidence:
        # A host named by its fully qualified name ("node-05.cluster") is the node folder of its first label.
        for peer in filter(None, [_peer(e)]):
            if peer.split(".", 1)[0] in nodes and not peer.replace(".", "").isdigit():
                names.setdefault(peer, peer.split(".", 1)[0])
    for node in nodes:
        names[node] = node
        aws = _AWS_NAME.match(node)
        if aws:
            names.setdefault(".".join(aws.groups()), node)
    for e in evidence:
        if not e.node:
            continue
        if e.kind == "transport_peer_error" and e.attrs.get("self_id"):
            names.setdefault(str(e.attrs["self_id"]), e.node)
        elif e.kind == "host_address" and e.attrs.get("address"):
            names.setdefault(str(e.attrs["address"]), e.node)
    return names
