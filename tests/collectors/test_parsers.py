"""Each parser on real lines taken from the incident cases (fleetscope/examples/incidents)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers import FileContext, Line, LineParser
from fleetscope.collectors.parsers.dcgm import DcgmParser
from fleetscope.collectors.parsers.host import HostSoftwareParser
from fleetscope.collectors.parsers.kernel import KernelLogParser
from fleetscope.collectors.parsers.libfabric import LibfabricParser
from fleetscope.collectors.parsers.nccl import NcclParser
from fleetscope.collectors.parsers.nccl_tests import NcclTestsParser
from fleetscope.collectors.parsers.nvidia_smi import NvidiaSmiLinesParser, NvidiaSmiQueryParser
from fleetscope.collectors.parsers.prometheus import PrometheusParser
from fleetscope.collectors.parsers.pytorch import PyTorchParser
from fleetscope.collectors.parsers.signatures import SignatureParser
from fleetscope.collectors.parsers.training import IterationTimeParser
from fleetscope.collectors.prefixes import split_prefixes
from fleetscope.formats import canonical_bus_id

CASES = Path(__file__).resolve().parents[2] / "fleetscope" / "examples" / "incidents"
CTX = FileContext(rel="node-01/test.log", node="node-01")


def feed(parser_cls: type[LineParser], text: str) -> list[Evidence]:
    parser = parser_cls(CTX)
    out: list[Evidence] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if any(k in raw for k in parser_cls.keywords):
            out.extend(parser.feed(Line(n, raw, split_prefixes(raw))))
    out.extend(parser.finish())
    return out


def lines_of(path: Path) -> list[Line]:
    return [Line(n, t, split_prefixes(t)) for n, t in enumerate(path.read_text().splitlines(), start=1)]


def test_bus_ids_in_every_form() -> None:
    assert canonical_bus_id("0000:3b:00") == "0000:3b:00.0"
    assert canonical_bus_id("00000000:BA:00.0") == "0000:ba:00.0"
    assert canonical_bus_id("00000018:01:00.0") == "0018:01:00.0"
    assert canonical_bus_id("5d000") == "0000:5d:00.0"  # NCCL's busId
    assert canonical_bus_id("GPU") is None


def test_xid_line_fields() -> None:
    line = (
        "[221684.337896] NVRM: Xid (PCI:0000:5d:00): 119, pid=3318842, name=python, Timeout after 45s of "
        "waiting for RPC response from GPU3 GSP! Expected function 76 (GSP_RM_CONTROL) (0x20801702 0x4)."
    )
    (e,) = feed(KernelLogParser, line)
    assert (e.kind, e.gpu_pci_bus_id, e.source) == ("xid", "0000:5d:00.0", "node-01/test.log:1")
    assert e.attrs["xid"] == 119 and e.attrs["pid"] == "3318842" and e.attrs["process"] == "python"
    assert e.attrs["driver_gpu"] == 3 and e.attrs["uptime_s"] == pytest.approx(221684.337896)


def test_xid_quoted_by_gpud_and_in_journal_form() -> None:
    quoted = (
        '[XID found] (54 minutes ago) "NVRM: Xid (PCI:0000:9b:00): 119, pid=4071838, name=python, '
        'Timeout after 45s of waiting for RPC response from GPU4 GSP! Expected function 76 (GSP_RM_CONTROL)."'
    )
    journal = (
        "kernel: NVRM: Xid (PCI:0000:dc:00): 45, pid=1818990, name=python3, Ch 00000001 "
        "caused by previous Xid 149"
    )
    a, b = feed(KernelLogParser, quoted + "\n" + journal)
    assert (a.attrs["xid"], a.gpu_pci_bus_id) == (119, "0000:9b:00.0")
    assert (b.attrs["xid"], b.attrs["caused_by_xid"], b.gpu_pci_bus_id) == (45, 149, "0000:dc:00.0")


def test_multiline_fallen_off_the_bus_is_one_message() -> None:
    evidence = feed(
        KernelLogParser, (CASES / "01-xid79-fallen-off-bus-multiline/node-01/dmesg.log").read_text()
    )
    fallen = [e for e in evidence if e.kind == "gpu_fallen_off_bus"]
    assert len(fallen) == 1
    assert fallen[0].gpu_pci_bus_id == "0000:b3:00.0"
    assert "fallen off the bus and is not responding" in fallen[0].text
    assert fallen[0].time_raw == "[ 1843.308145]"
    assert {e.kind for e in evidence} == {"gpu_fallen_off_bus", "driver_probe_failed"}


def test_pcie_aer_names_the_gpu_and_the_root_port() -> None:
    evidence = feed(
        KernelLogParser, (CASES / "44-pcie-aer-fatal-cmpltto-gpu-root-port/node-01/dmesg.txt").read_text()
    )
    gpu = {e.gpu_pci_bus_id for e in evidence if e.gpu_pci_bus_id}
    assert gpu == {"0000:03:00.0"}
    fatal = [e for e in evidence if e.severity == "critical"]
    assert fatal and all(e.attrs["device"] == "0000:00:03.0" for e in fatal)
    assert {e.attrs.get("error_bit") for e in evidence} >= {"SDES", "CmpltTO"}


def test_nccl_ib_completion_error_with_and_without_peer() -> None:
    bare = "NCCL WARN NET/IB : Got completion with error 12, opcode 0, len 0, vendor err 129"
    (e,) = feed(NcclParser, bare)
    assert (e.kind, e.attrs["status"], e.attrs["vendor_err"], e.attrs["peer"]) == (
        "ib_completion_error",
        12,
        "129",
        None,
    )
    quoted = (CASES / "06-pytorch-ncclremoteerror-ib-error12-peer/node-01/train.log").read_text()
    ib = [x for x in feed(NcclParser, quoted) if x.kind == "ib_completion_error"]
    assert ib[0].attrs["peer"] == "10.0.0.2<39138>" and ib[0].attrs["status"] == 12
    newer = (
        "node-01:1:2 [0] transport/net_ib.cc:1696 NCCL WARN NET/IB : Got completion from peer "
        "10.1.2.3<43385> with status=IBV_WC_REM_ACCESS_ERR(10) opcode=RDMA_WRITE(1) reqSize=0 vendor_err=136"
    )
    (n,) = feed(NcclParser, newer)
    assert n.attrs["status"] == 10


def test_nccl_ofi_lines_and_host_prefix() -> None:
    line = (
        "[1,13]<stdout>:node-02:35:89 [5] ofi_process_cq:1039 NCCL WARN NET/OFI Request 0x7fbb944701b8 "
        "completed with error. RC: 20. Error: unknown error. Completed length: 0"
    )
    parser = NcclParser(FileContext(rel="nccl.log", node=None))
    (e,) = parser.feed(Line(1, line, split_prefixes(line)))
    assert (e.kind, e.attrs["rc"], e.node, e.attrs["rank"]) == ("ofi_completion_error", 20, "node-02", 13)
    getinfo = (
        "[2025-10-16 22:16:08] node-01:1929:1937 [0] nccl_net_ofi_rdma_init:7978 NCCL WARN NET/OFI OFI "
        "fi_getinfo() call failed: No data available"
    )
    (g,) = feed(NcclParser, getinfo)
    assert (g.kind, g.attrs["call"], g.attrs["error"]) == (
        "ofi_call_failed",
        "fi_getinfo",
        "No data available",
    )
    assert g.time is not None and g.time.isoformat() == "2025-10-16T22:16:08+00:00"


def test_nccl_bus_id_line_maps_device_to_bus() -> None:
    line = (
        "node-02:2231:2231 [3] NCCL INFO comm 0x55d0 rank 11 nRanks 24 nNodes 3 localRanks 8 localRank 3 "
        "MNNVL 0 cudaDev 3 nvmlDev 3 busId 5d000 commId 0x1 - Init START"
    )
    (e,) = feed(NcclParser, line)
    assert (e.kind, e.gpu, e.gpu_pci_bus_id, e.attrs["rank"]) == ("gpu_identity", 3, "0000:5d:00.0", 11)


def test_c10d_watchdog_fields() -> None:
    evidence = feed(
        PyTorchParser,
        (CASES / "50-multinode-xid119-gsp-timeout-collective-hang/node-02/train.log").read_text(),
    )
    timeouts = [e for e in evidence if e.kind == "c10d_watchdog_timeout"]
    # Ranks 8-15 run on node-02; rank 11 (on the GPU with the Xid) never reports.
    assert sorted(e.attrs["rank"] for e in timeouts) == [8, 9, 10, 12, 13, 14, 15]
    first = timeouts[0]
    assert first.attrs == {
        "seq": 911207,
        "op": "ALLREDUCE",
        "timeout_ms": 1800000,
        "ran_ms": 1800501,
        "numel_in": 26214400,
        "numel_out": 26214400,
        "rank": 12,
    }
    assert first.time is not None and first.time.isoformat() == "2024-11-06T21:47:38+00:00"


def test_nccl_result_and_exception() -> None:
    text = (CASES / "06-pytorch-ncclremoteerror-ib-error12-peer/node-01/train.log").read_text()
    kinds = {e.kind: e for e in feed(PyTorchParser, text)}
    assert kinds["nccl_result"].attrs["result"] == "ncclRemoteError"
    (oom,) = [
        e
        for e in feed(
            PyTorchParser, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 388.00 MiB."
        )
    ]
    assert (oom.kind, oom.attrs["type"]) == ("exception", "OutOfMemoryError")


def test_libfabric_line_has_epoch_time_and_errno() -> None:
    line = (
        "[1,13]<stderr>:libfabric:35:1668017255::efa:cq:rxr_cq_write_tx_error():243<warn> "
        "rxr_cq_write_tx_error: err: 20, prov_err: Not a directory (20)"
    )
    (e,) = feed(LibfabricParser, line)
    assert (e.attrs["errno"], e.attrs["provider"], e.attrs["prov_err"]) == (20, "efa", "Not a directory (20)")
    assert e.time is not None and e.time.year == 2022


def test_signatures_place_the_fault() -> None:
    oom = feed(SignatureParser, (CASES / "15-cuda-oom-fsdp-sft/node-01/train.log").read_text())
    assert [(e.attrs["signature"], e.gpu) for e in oom] == [("cuda_out_of_memory", 0)]
    handle = feed(
        SignatureParser, "Unable to determine the device handle for GPU 0000:0B:00.0: Unknown Error"
    )
    assert [(e.attrs["signature"], e.gpu_pci_bus_id) for e in handle] == [
        ("nvidia_smi_gpu_handle_error", "0000:0b:00.0")
    ]
    ecc = feed(SignatureParser, "RuntimeError: CUDA error: uncorrectable ECC error encountered")
    assert [(e.kind, e.attrs["name"]) for e in ecc] == [("cuda_error", "cudaErrorECCUncorrectable")]
    # CUDA's generic messages are not matched outside a CUDA error report.
    assert (
        feed(SignatureParser, "NCCL WARN NET/OFI Request completed with error. RC: 20. Error: unknown error.")
        == []
    )


def test_nvidia_smi_list_and_nvlink_status() -> None:
    evidence = feed(
        NvidiaSmiLinesParser,
        (CASES / "25-nvlink-two-links-inactive-nvlink-status/node-01/nvidia-smi-nvlink-s.txt").read_text(),
    )
    links = {e.attrs["link"]: e.attrs["up"] for e in evidence if e.kind == "nvlink_state"}
    assert links == {0: True, 1: True, 2: True, 3: False, 4: True, 5: False}
    assert {e.gpu for e in evidence} == {3}
    all_down = feed(
        NvidiaSmiLinesParser,
        (CASES / "47-b200-gpu2-all-nvlinks-inactive/node-01/nvidia-smi-nvlink.txt").read_text(),
    )
    assert [(e.kind, e.gpu) for e in all_down] == [("gpu_identity", 2), ("nvlink_all_inactive", 2)]


def test_nvidia_smi_query_sections() -> None:
    path = CASES / "40-xid63-row-remap-pending-correctable-a100/node-01/nvidia-smi-q.txt"
    assert NvidiaSmiQueryParser.sniff(path.read_text())
    evidence = list(NvidiaSmiQueryParser(CTX).parse(lines_of(path)))
    ident = [e for e in evidence if e.kind == "gpu_identity"]
    # One section of 8 attached GPUs: the section's position is not its index.
    assert [(e.gpu, e.gpu_pci_bus_id) for e in ident] == [(None, "0000:10:1c.0")]
    fields = {e.attrs["path"]: e.attrs["value"] for e in evidence if e.kind == "smi_field"}
    assert fields["Remapped Rows / Pending"] == "Yes"
    assert fields["ECC Errors / Volatile / DRAM Correctable"] == "177"


def test_dcgm_health_incident() -> None:
    (e,) = feed(
        DcgmParser, (CASES / "14-dcgm-health-thermal-violation/node-01/nv-hostengine.log").read_text()
    )
    assert (e.gpu, e.attrs["system"], e.attrs["level"]) == (2, "Thermal", "WARNING")


def test_prometheus_dcgm_samples_and_identity() -> None:
    path = CASES / "11-ecc-sbe-storm-gb200-dcgm-stall/node-01/metrics.prom"
    assert PrometheusParser.sniff(path.read_text())
    evidence = list(PrometheusParser(CTX).parse(lines_of(path)))
    sbe = [e for e in evidence if e.kind == "metric" and e.attrs["name"] == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"]
    assert {(e.gpu, e.attrs["value"]) for e in sbe} == {(0, 0), (1, 0), (2, 9.6e9), (3, 0)}
    assert sbe[2].source == "node-01/test.log:5"
    ids = {(e.gpu, e.gpu_pci_bus_id) for e in evidence if e.kind == "gpu_identity"}
    assert (2, "0018:01:00.0") in ids


def test_apt_history_and_module_listing() -> None:
    apt = feed(
        HostSoftwareParser,
        (CASES / "27-nvidia-driver-broken-by-unattended-upgrade/node-01/apt-history.log").read_text(),
    )
    (change,) = [e for e in apt if e.kind == "package_change"]
    assert change.attrs["unattended"] and change.attrs["new"] == "460.80-0ubuntu0.20.04.2"
    assert change.time is not None and change.time.isoformat() == "2021-06-04T06:41:09+00:00"
    cmds = feed(
        HostSoftwareParser,
        (CASES / "29-nvidia-module-missing-for-new-kernel/node-01/commands.txt").read_text(),
    )
    assert [e.attrs["release"] for e in cmds if e.kind == "kernel_release"] == ["3.13.0-116-generic"]
    assert {e.attrs["release"] for e in cmds if e.kind == "module_file"} == {"3.13.0-88-generic"}


def test_iteration_times_keep_only_the_jumps_from_the_baseline() -> None:
    evidence = feed(
        IterationTimeParser, (CASES / "17-straggler-iteration-time-jump-unresolved/train.log").read_text()
    )
    jumps = [e for e in evidence if e.kind == "iteration_time_jump"]
    assert jumps[0].attrs["before_s"] == pytest.approx(32.403)
    assert [round(e.attrs["after_s"]) for e in jumps] == [109, 196, 744]


def test_zero_step_times_set_no_baseline() -> None:
    # step_time=0.0s measures nothing: it never becomes the level a jump is measured from.
    lines = "".join("step_time=0.0s loss=1.0\n" for _ in range(6)) + "".join(
        f"step_time={t}s\n" for t in (1.0, 1.0, 1.0, 1.0, 1.0, 3.0)
    )
    (jump,) = feed(IterationTimeParser, lines)
    assert (jump.attrs["before_s"], jump.attrs["after_s"]) == (1.0, 3.0)


def test_older_oom_message_and_ofi_init_failure() -> None:
    old = (
        "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 3; 15.78 GiB total capacity; "
        "14.1 GiB already allocated)"
    )
    assert [(e.attrs["signature"], e.gpu) for e in feed(SignatureParser, old)] == [("cuda_out_of_memory", 3)]
    init = (
        "node-01:7:7 [0] nccl_net_ofi_create_plugin:261 NCCL WARN NET/OFI Unable to find a protocol that "
        "worked.  Failing initialization."
    )
    (e,) = feed(NcclParser, init)
    assert (e.kind, e.attrs["error"]) == ("ofi_call_failed", "Unable to find a protocol that worked")


def test_efa_provider_error_code_is_read() -> None:
    line = (
        "node-01:7:7 [0] NCCL WARN NET/OFI Request 0x7f456c224810 completed with error. RC: 103. "
        "Error: 4126 (Unresponsive receiver (reachable by EFA device but handshake failed)"
    )
    (e,) = feed(NcclParser, line)
    assert (e.attrs["rc"], e.attrs["prov_errno"]) == (103, 4126)


def test_nccl_tests_summary_and_wrong_values() -> None:
    text = (
        "#       size         count      type   redop    root     time   algbw   busbw #wrong"
        "     time   algbw   busbw #wrong\n"
        "   134217728      33554432     float     sum      -1   1234.5  108.72  203.85      0"
        "   1230.1  109.11  204.58      3\n"
        "# Out of bounds values : 3 FAILED\n"
        "# Avg bus bandwidth    : 182.3 \n"
    )
    evidence = feed(NcclTestsParser, text)
    assert [(e.kind, e.attrs.get("count"), e.attrs.get("gb_per_s")) for e in evidence] == [
        ("nccl_tests_wrong_values", 3, None),
        ("nccl_tests_wrong_values", 3, None),
        ("nccl_tests_busbw", None, 182.3),
    ]


def test_a_bus_bandwidth_that_is_not_a_number_is_no_evidence() -> None:
    # Found by the property tests: "1.2.3" matched the old pattern and float() raised.
    assert feed(NcclTestsParser, "# Avg bus bandwidth    : 1.2.3 \n") == []
    (e,) = feed(NcclTestsParser, "# Avg bus bandwidth    : 181.82 \n")
    assert e.attrs["gb_per_s"] == 181.82
