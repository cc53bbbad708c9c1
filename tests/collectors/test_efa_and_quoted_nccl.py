"""EFA provider aborts, aws-ofi-nccl failures, lost peers, and NCCL errors raised through PyTorch.

Line shapes come from the tools' sources and public reports, cited per constant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.judging import diagnose

# libfabric prov/efa/src/efa_base_ep.c, efa_base_ep_write_eq_error(): the banner printed before abort();
# "encounterd" is the spelling of releases before 1.19 (prov/efa/src/rdm/rxr_ep.h).
EFA_BANNER = (
    "[1,32]<stderr>:Libfabric EFA provider has {verb} an internal error:\n"
    "[1,32]<stderr>:\n"
    "[1,32]<stderr>:Libfabric error: ({fi}) {fi_text}\n"
    "[1,32]<stderr>:EFA internal error: ({prov}) {prov_text}\n"
    "[1,32]<stderr>:\n"
    "[1,32]<stderr>:Your application will now abort().\n"
)
# bash's ``ulimit -a``; /proc/<pid>/limits (proc(5)); libibverbs' warning (rdma-core libibverbs/init.c).
MEMLOCK_SHAPES = [
    "max locked memory           (kbytes, -l) 64\n",
    "Max locked memory         65536                65536                bytes\n",
    "libibverbs: Warning: RLIMIT_MEMLOCK is 65536 bytes.\n",
]
# aws-ofi-nccl's registration failure (nccl_ofi_rdma.c / nccl_ofi_sendrecv.c "Unable to register memory
# (type = %d) for device %d. RC: %d, Error: %s").
OFI_REG = (
    "node-03:41250:41391 [0] nccl_net_ofi_reg_mr_dma_buf:588 NCCL WARN NET/OFI Unable to register memory "
    "(type = 2) for device 0. RC: -22, Error: Invalid argument\n"
)
# libfabric efa_rdm_txe_handle_error() warning with both sides' EFA addresses and host ids, as quoted in
# aws/aws-ofi-nccl issue 346; "Unresponsive receiver (reachable by EFA device but handshake failed)" is
# FI_EFA_ERR_UNESTABLISHED_RECV_UNRESP (ofiwg/libfabric pull 10410).
PEER_GONE = (
    "libfabric:451707:1708520807::efa:cq:efa_rdm_txe_handle_error():737<warn> err: 113, message: "
    "Unresponsive receiver (reachable by EFA device but handshake failed) My EFA addr: "
    "fi_addr_efa://[fe80::13:c2ff:fe6f:f0{n}]:0:1072483550 My host id: i-0aaaaaaaaaaaaa{n} Peer EFA addr: "
    "fi_addr_efa://[fe80::b8:aff:fe44:425]:0:947699476 Peer host id: i-0ce6d3d57139f053c (4126)\n"
)
# The peer's own earlier line names its host id (same libfabric function, receiving side).
PEER_OWN = (
    "libfabric:7711:1708520700::efa:cq:efa_rdm_rxe_handle_error():812<warn> err: 5, message: Unexpected "
    "status returned by responder My EFA addr: fi_addr_efa://[fe80::b8:aff:fe44:425]:0:947699476 My host "
    "id: i-0ce6d3d57139f053c Peer EFA addr: fi_addr_efa://[fe80::13:c2ff:fe6f:f001]:0:1072483550 Peer host "
    "id: i-0aaaaaaaaaaaaa01 (12)\n"
)
# PyTorch's DistBackendError for an NCCL failure (torch/csrc/distributed/c10d/NCCLUtils.hpp), then NCCL's
# last WARN: the duplicate-device check of NCCL init.cc, the NVLS bind failure of NCCL transport/nvls.cc
# (quoted in public reports with NCCL 2.29.7), and the QP transition of NCCL's ibvwrap
# ("Call to ibv_modify_qp failed with %d %s, on dev %s:%d, curr state %s, next state %s ...").
RAISED = (
    "[rank{rank}]: torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/"
    "NCCLUtils.cpp:93, {what}, NCCL version 2.21.5\n"
    "[rank{rank}]: {result}: {result_text}\n"
    "[rank{rank}]: Last error:\n"
    "[rank{rank}]: {last}\n"
)
LAST_ERRORS = [
    (
        "invalid usage (run with NCCL_DEBUG=WARN for details)",
        "ncclInvalidUsage",
        "This usually reflects invalid usage of NCCL library.",
        "Duplicate GPU detected : rank 3 and rank 0 both on CUDA device 1b000",
        "job",
        "nccl_warn:duplicate_gpu",
    ),
    (
        "unhandled cuda error",
        "ncclUnhandledCudaError",
        "Call to CUDA function failed.",
        "Failed to bind NVLink SHARP (NVLS) Multicast memory of size 2097152 : CUDA error 401 'the operation "
        "cannot be performed in the present state'.",
        "nvlink",
        "nccl_warn:nvls_multicast_bind_failed",
    ),
    (
        "unhandled system error (run with NCCL_DEBUG=INFO for details)",
        "ncclSystemError",
        "System call (e.g. socket, malloc) or external library call failed or device error.",
        "Call to ibv_modify_qp failed with 110 Connection timed out, on dev mlx5_3:1, curr state INIT, next "
        "state RTR, local GID index 3, local GID ::ffff:10.1.2.6, remote GID ::ffff:10.1.2.9",
        "network",
        "nccl_warn:ib_modify_qp_failed",
    ),
]


@pytest.mark.parametrize("verb", ["encountered", "encounterd"])
@pytest.mark.parametrize("memlock", MEMLOCK_SHAPES)
def test_efa_abort_with_a_finite_memlock_names_the_limit(tmp_path: Path, verb: str, memlock: str) -> None:
    banner = EFA_BANNER.format(
        verb=verb, fi=-12, fi_text="Cannot allocate memory", prov=4105, prov_text="Out of memory"
    )
    report = diagnose(tmp_path, {"node-04/train.log": banner, "node-04/limits.txt": memlock})
    top = report["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("efa_abort:4105", "network", "node-04")
    assert "64 KiB" in top["summary"]
    assert "memlock" in top["action"]
    assert len(top["evidence"]) == 2


def test_efa_abort_without_memlock_evidence_only_asks_to_check_it(tmp_path: Path) -> None:
    banner = EFA_BANNER.format(
        verb="encountered", fi=-12, fi_text="Cannot allocate memory", prov=4105, prov_text="Out of memory"
    )
    top = diagnose(tmp_path, {"node-04/train.log": banner})["root_causes"][0]
    assert (top["layer"], top["node"]) == ("network", "node-04")
    assert "KiB" not in top["summary"]
    assert "check the job's locked-memory limit" in top["action"]


def test_efa_abort_that_is_not_about_memory_says_nothing_of_memlock(tmp_path: Path) -> None:
    banner = EFA_BANNER.format(
        verb="encountered",
        fi=-5,
        fi_text="Input/output error",
        prov=4124,
        prov_text="Unresponsive receiver (connection previously established)",
    )
    files = {"node-04/train.log": banner, "node-04/limits.txt": MEMLOCK_SHAPES[0]}
    top = diagnose(tmp_path, files)["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("efa_abort:4124", "network", "node-04")
    assert "locked-memory" not in top["summary"] + top["action"]


def test_unlimited_memlock_is_not_blamed(tmp_path: Path) -> None:
    banner = EFA_BANNER.format(
        verb="encountered", fi=-12, fi_text="Cannot allocate memory", prov=4105, prov_text="Out of memory"
    )
    limits = "max locked memory           (kbytes, -l) unlimited\n"
    top = diagnose(tmp_path, {"node-04/train.log": banner, "node-04/limits.txt": limits})["root_causes"][0]
    assert "KiB" not in top["summary"]


def test_ofi_registration_failure_is_the_network_layer_on_its_node(tmp_path: Path) -> None:
    files = {"node-03/train.log": OFI_REG, "node-03/limits.txt": MEMLOCK_SHAPES[1]}
    report = diagnose(tmp_path, files)
    top = report["root_causes"][0]
    assert (top["layer"], top["node"]) == ("network", "node-03")
    assert top["kind"].startswith("ofi_warn:")
    assert "RC 22" in top["summary"] and "64 KiB" in top["summary"]
    assert not any(r["kind"] == "nccl_warn" for r in report["root_causes"] + report["symptoms"])


def test_peer_named_by_many_nodes_is_the_cause_not_the_nodes_that_logged_it(tmp_path: Path) -> None:
    files = {
        "node-01/train.log": PEER_GONE.format(n="01"),
        "node-02/train.log": PEER_GONE.format(n="02"),
        "node-05/train.log": PEER_OWN,
    }
    top = diagnose(tmp_path, files)["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("lost_peer", "network", "node-05")
    assert "node-01, node-02" in top["summary"]


def test_an_unmapped_peer_is_named_by_its_host_id(tmp_path: Path) -> None:
    files = {"node-01/train.log": PEER_GONE.format(n="01"), "node-02/train.log": PEER_GONE.format(n="02")}
    top = diagnose(tmp_path, files)["root_causes"][0]
    assert (top["kind"], top["node"]) == ("lost_peer", "i-0ce6d3d57139f053c")


@pytest.mark.parametrize(("what", "result", "result_text", "last", "layer", "kind"), LAST_ERRORS)
def test_nccl_error_raised_through_pytorch_takes_its_last_error(
    tmp_path: Path, what: str, result: str, result_text: str, last: str, layer: str, kind: str
) -> None:
    text = RAISED.format(rank=3, what=what, result=result, result_text=result_text, last=last)
    top = diagnose(tmp_path, {"node-06/train.log": text})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == (kind, layer, "node-06")


def test_last_error_on_the_same_line_is_read_too(tmp_path: Path) -> None:
    text = (
        "RuntimeError: NCCL Error 5: invalid usage. Last error: Duplicate GPU detected : rank 1 and rank 0\n"
    )
    top = diagnose(tmp_path, {"node-02/err.log": text})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("nccl_warn:duplicate_gpu", "job", "node-02")


def test_nccl_own_warn_line_is_not_counted_twice(tmp_path: Path) -> None:
    # NCCL init.cc's WARN itself (header "host:pid:tid [dev] NCCL WARN"), read by the nccl parser alone.
    text = (
        "node-02:811:811 [1] NCCL WARN Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 1a000\n"
    )
    top = diagnose(tmp_path, {"node-02/nccl.log": text})["root_causes"][0]
    assert top["kind"] == "nccl_warn:duplicate_gpu"
    assert len(top["evidence"]) == 1


def test_torchrun_report_names_the_signal_once(tmp_path: Path) -> None:
    # torch.distributed.elastic ChildFailedError report: exitcode -6 and the "Signal 6 (SIGABRT)" line.
    text = (
        "  rank      : 3 (local_rank: 3)\n"
        "  exitcode  : -6 (pid: 4411)\n"
        "  error_file: <N/A>\n"
        "  traceback : Signal 6 (SIGABRT) received by PID 4411\n"
    )
    top = diagnose(tmp_path, {"node-01/train.log": text})["root_causes"][0]
    assert top["kind"] == "signature:worker_crash_signal"
    assert "signal 6 (" in top["summary"] and "66" not in top["summary"]


# NCCL's IB transport (src/transport/net_ib): "NET/IB : Got completion from peer <addr><port> with error
# <ibv_wc_status>, opcode ..., len ..., vendor err ..." and its bootstrap address line (src/bootstrap.cc).
IB_FROM_PEER = (
    "{node}:2231:2290 [{d}] transport/net_ib.cc:1696 NCCL WARN NET/IB : Got completion from peer "
    "10.0.0.15<39138> with status={status} opcode=0 len=0 vendor err 129 (Recv) localGid ::ffff:10.0.0.{n} "
    "remoteGids::ffff:10.0.0.15\n"
)
BOOTSTRAP = "node-05:4411:4411 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.15<0>\n"


def test_ib_retry_exceeded_from_many_nodes_points_at_the_peer(tmp_path: Path) -> None:
    files = {
        f"node-0{n}/train.log": IB_FROM_PEER.format(node=f"node-0{n}", d=n, status=12, n=n) for n in (1, 2, 3)
    }
    files["node-05/train.log"] = BOOTSTRAP
    top = diagnose(tmp_path, files)["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("lost_peer", "network", "node-05")


def test_ib_peer_named_by_an_aws_host_name(tmp_path: Path) -> None:
    files = {
        f"ip-10-0-0-{n}/train.log": IB_FROM_PEER.format(node=f"ip-10-0-0-{n}", d=n, status=12, n=n)
        for n in (1, 2)
    }
    # Any evidence from the peer's own folder (here the driver naming a GPU) makes it a node of the bundle.
    files["ip-10-0-0-15/dmesg.log"] = (
        "[    5.100000] NVRM: GPU at PCI:0000:10:1c: GPU-3f1a2b4c-5d6e-7f80-91a2-b3c4\n"
    )
    top = diagnose(tmp_path, files)["root_causes"][0]
    assert (top["kind"], top["node"]) == ("lost_peer", "ip-10-0-0-15")


def test_one_reporter_does_not_blame_the_peer(tmp_path: Path) -> None:
    files = {"node-01/train.log": IB_FROM_PEER.format(node="node-01", d=1, status=12, n=1)}
    files["node-05/train.log"] = BOOTSTRAP
    top = diagnose(tmp_path, files)["root_causes"][0]
    assert top["kind"] != "lost_peer"


@pytest.mark.parametrize(
    "code", ["1 'invalid argument'", "401 'the operation cannot be performed in the present state'"]
)
def test_a_cuda_failure_in_nccls_nvls_transport_is_nvlink(tmp_path: Path, code: str) -> None:
    # NVIDIA/nccl issues 1672 and 1788: "[1] transport/nvls.cc:254 NCCL WARN Cuda failure 401 '...'".
    text = (
        f"[2025-07-21 19:05:29] node004:27907:27907 [1] transport/nvls.cc:254 NCCL WARN Cuda failure {code}\n"
    )
    top = diagnose(tmp_path, {"node004/nccl.log": text})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("nccl_warn:nvls_cuda_failure", "nvlink", "node004")


def test_a_cuda_failure_elsewhere_is_not_read_as_nvlink(tmp_path: Path) -> None:
    text = "node004:27907:27907 [1] enqueue.cc:1556 NCCL WARN Cuda failure 'out of memory'\n"
    report = diagnose(tmp_path, {"node004/nccl.log": text})
    assert all(r["layer"] != "nvlink" for r in report["root_causes"] + report["symptoms"])


# NCCL src/misc/socket.cc WARN lines naming the peer (hostname or address, then "<port>").
SOCKET_CLOSED = (
    "{node}:3311:3402 [{d}] misc/socket.cc:47 NCCL WARN socketProgress: Connection closed by remote peer "
    "node-07.cluster<46114>\n"
)
SOCKET_UNREACHABLE = (
    "{node}:3311:3402 [{d}] misc/socket.cc:484 NCCL WARN socketStartConnect: Connect to 10.0.0.17<36531> "
    "failed : No route to host\n"
)


def test_socket_peer_closed_from_many_nodes_points_at_it(tmp_path: Path) -> None:
    files = {f"node-0{n}/train.log": SOCKET_CLOSED.format(node=f"node-0{n}", d=n) for n in (1, 2, 3)}
    files["node-07/dmesg.log"] = (
        "[   12.0] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=python, GPU has fallen off the bus.\n"
    )
    report = diagnose(tmp_path, files)
    assert report["root_causes"][0]["node"] == "node-07"
    lost = next(r for r in report["root_causes"] if r["kind"] == "lost_peer")
    assert lost["node"] == "node-07"


def test_socket_peer_unreachable_by_address(tmp_path: Path) -> None:
    files = {f"node-0{n}/train.log": SOCKET_UNREACHABLE.format(node=f"node-0{n}", d=n) for n in (1, 2)}
    files["node-07/train.log"] = "node-07:4411:4411 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.17<0>\n"
    top = diagnose(tmp_path, files)["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("lost_peer", "network", "node-07")


def test_nccl_error_without_last_error_keeps_its_node(tmp_path: Path) -> None:
    # PyTorch's DistBackendError with the result code only (no "Last error:" text in the log).
    text = (
        "[rank5]: torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/"
        "ProcessGroupNCCL.cpp:1970, remote process exited or there was a network error, NCCL version 2.21.5\n"
        "[rank5]: ncclRemoteError: A call failed possibly due to a network error or a remote process exiting "
        "prematurely.\n"
    )
    top = diagnose(tmp_path, {"node-04/train.log": text})["root_causes"][0]
    assert (top["kind"], top["node"]) == ("nccl_result:ncclRemoteError", "node-04")
    assert top["certainty"] == "unsure"


@pytest.mark.parametrize(
    ("last", "kind", "layer"),
    [
        # NCCL's ibvwrap WARN for a memory registration that fails (GPUDirect RDMA, memlock).
        ("Call to ibv_reg_mr_iova2 failed with error Bad address", "nccl_warn:ib_reg_mr_failed", None),
        # NCCL's socket.cc connect failure, and its shared-memory transport's /dev/shm failure.
        ("socketStartConnect: Connect to 10.0.0.17<36531> failed : Connection refused", None, "network"),
        ("Error while creating shared memory segment /dev/shm/nccl-4M7bLx (size 9637888)", None, None),
        ("Message truncated : received 2048 bytes instead of 1024", "nccl_warn:message_truncated", "job"),
    ],
)
def test_more_last_errors_are_classified_by_the_catalogue(
    tmp_path: Path, last: str, kind: str | None, layer: str | None
) -> None:
    text = RAISED.format(
        rank=2,
        what="unhandled system error",
        result="ncclSystemError",
        result_text="System call failed.",
        last=last,
    )
    top = diagnose(tmp_path, {"node-02/train.log": text})["root_causes"][0]
    assert top["kind"].startswith("nccl_warn:") and top["node"] == "node-02"
    if kind is not None:
        assert top["kind"] == kind
    if layer is not None:
        assert top["layer"] == layer
