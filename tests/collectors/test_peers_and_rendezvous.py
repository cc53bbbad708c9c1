"""c10d / Gloo lost-peer echoes and rendezvous failures, on bundles assembled from real line shapes.

Line shapes: PyTorch's TCPStore client error (torch/csrc/distributed/c10d/Utils.hpp ``recvBytes``), Gloo's
tcp/pair.cc read error, c10d socket.cpp server-socket errors (torch 2.2+ and the older errno form), the
TCPStore server's wait for clients, the kernel's OOM killer (fleetscope/examples/incidents 16) and Xid 79
(fleetscope/examples/incidents 01).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.judging import diagnose

RECV = (
    "[rank3]: torch.distributed.DistNetworkError: Failed to recv, got 0 bytes. Connection was likely "
    "closed. Did the remote server shutdown or crash?\n"
)
GLOO = (
    "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Read error [10.0.0.12]:52050: "
    "Connection reset by peer\n"
)
PIPE = (
    "[W1115 12:00:00.000000000 TCPStore.cpp:141] [c10d] sendBytes failed on SocketImpl(fd=3, "
    "addr=[::ffff:10.0.0.11]:60478, remote=[::ffff:10.0.0.10]:29500): Broken pipe\n"
)
OOM = "[Tue Mar  5 10:01:02 2024] Out of memory: Killed process 4242 (python) total-vm:100kB, anon-rss:90kB\n"
XID79 = (
    "[221684.337896] NVRM: Xid (PCI:0000:3b:00): 79, pid=3318842, name=python, GPU has fallen off the bus.\n"
)
NCCL_RESET = (
    "node-01:1234:1300 [0] misc/socket.cc:538 NCCL WARN Net : Connection closed by remote peer "
    "10.0.0.12<52050>: Connection reset by peer\n"
)
PEER_LOST_SUMMARY = (
    "A rank on node-01 lost its connection to a peer or to the rendezvous store (c10d TCPStore / Gloo: the "
    "other end closed or reset the socket): another rank or node died or hung up first; the bundle holds no "
    "evidence of what caused it"
)


#: The same message before torch 2.8 (kubeflow/website#4186).
RECV_OLD = (
    "[W822 03:54:49.636977195 TCPStore.cpp:125] [c10d] recvValue failed on SocketImpl(fd=15, "
    "addr=[node-01]:60560, remote=[node-00]:29500): failed to recv, got 0 bytes\n"
)


@pytest.mark.parametrize("line", [RECV, RECV_OLD, GLOO, PIPE])
def test_a_lost_peer_alone_is_an_unsure_incident(tmp_path: Path, line: str) -> None:
    out = diagnose(tmp_path, {"node-01/train.log": line})
    assert out["incident"] is True
    top = out["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["confidence"]) == (
        "signature:c10d_peer_connection_lost",
        None,
        "node-01",
        0.3,
    )
    assert top["summary"] == PEER_LOST_SUMMARY


def test_an_oom_kill_on_another_node_explains_the_lost_peer(tmp_path: Path) -> None:
    out = diagnose(tmp_path, {"node-01/train.log": RECV + GLOO, "node-02/dmesg.log": OOM})
    top = out["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("signature:host_oom_killer", "job", "node-02")
    assert [(s["kind"], s["node"], s["explained_by"]) for s in out["symptoms"]] == [
        ("signature:c10d_peer_connection_lost", "node-01", 0)
    ]


def test_an_xid79_on_another_node_explains_the_lost_peer(tmp_path: Path) -> None:
    out = diagnose(tmp_path, {"node-01/train.log": RECV, "node-02/dmesg.log": XID79})
    top = out["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu_pci_bus_id"]) == (
        "xid:79",
        "gpu_hardware",
        "node-02",
        "0000:3b:00.0",
    )
    assert [(s["kind"], s["explained_by"]) for s in out["symptoms"]] == [
        ("signature:c10d_peer_connection_lost", 0)
    ]


def test_nccl_socket_resets_are_left_to_the_nccl_family(tmp_path: Path) -> None:
    out = diagnose(tmp_path, {"node-01/train.log": NCCL_RESET})
    kinds = [r["kind"] for r in out["root_causes"]] + [s["kind"] for s in out["symptoms"]]
    assert "signature:c10d_peer_connection_lost" not in kinds


@pytest.mark.parametrize(
    "line",
    [
        "torch.distributed.DistNetworkError: The server socket has failed to listen on any local network "
        "address. port: 29500, useIpv6: 0, code: -98, name: EADDRINUSE, message: address already in use\n",
        "RuntimeError: The server socket has failed to listen on any local network address. The server "
        "socket has failed to bind to [::]:29500 (errno: 98 - Address already in use). The server socket "
        "has failed to bind to 0.0.0.0:29500 (errno: 98 - Address already in use).\n",
    ],
)
def test_a_rendezvous_port_in_use_is_the_jobs(tmp_path: Path, line: str) -> None:
    out = diagnose(tmp_path, {"node-01/train.log": line})
    top = out["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["confidence"]) == (
        "signature:rendezvous_port_in_use",
        "job",
        "node-01",
        0.65,
    )
    assert top["summary"] == (
        "The job on node-01 could not start its rendezvous server (c10d TCPStore): the rendezvous port is "
        "already in use on that node, by another job or a stale process of an earlier run"
    )
    assert len(out["root_causes"]) == 1  # the exception line is the signature's, not a second cause


def test_a_rendezvous_timeout_is_the_jobs_configuration(tmp_path: Path) -> None:
    line = (
        "torch.distributed.DistStoreError: Timed out after 901 seconds waiting for clients. "
        "1/2 clients joined.\n"
    )
    out = diagnose(tmp_path, {"node-01/train.log": line})
    top = out["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["confidence"]) == (
        "signature:rendezvous_timeout",
        "job",
        "node-01",
        0.45,
    )
    assert top["summary"] == (
        "The job's rendezvous on node-01 timed out (Timed out after 901 seconds waiting for clients. 1/2 "
        "clients joined): not every rank joined, so a rank did not start or the world size or rendezvous "
        "endpoint is misconfigured"
    )


def test_a_network_cause_outranks_a_rendezvous_timeout(tmp_path: Path) -> None:
    rdzv = "torch.elastic.rendezvous.api.RendezvousTimeoutError\n"
    # fleetscope/examples/incidents/05's IB work-completion error (status 12, retry exceeded) on the same
    # node.
    ib = (
        "node-01:353236:353423 [6] transport/net_ib.cc:2244 NCCL WARN NET/IB: Got completion from peer "
        "10.0.0.5<53908> with status=12 opcode=129 len=1048576 vendor err 129 (Recv) "
        "localGid ::ffff:10.0.6.3 remoteGids::ffff:10.0.6.5 hca mlx5_10\n"
    )
    out = diagnose(tmp_path, {"node-01/train.log": rdzv + ib})
    assert (out["root_causes"][0]["layer"], out["root_causes"][0]["node"]) == ("network", "node-01")
    assert "signature:rendezvous_timeout" in [r["kind"] for r in out["root_causes"]]
