"""Cause versus symptom, on bundles assembled in tmp_path from real line shapes
(fleetscope/examples/incidents)."""

from __future__ import annotations

from pathlib import Path

from fleetscope.collectors import investigate

WATCHDOG = (
    "[2024-11-06 21:47:38]   what():  [PG ID 0 PG GUID 0(default_pg) Rank {rank}] Process "
    "group watchdog thread "
    "terminated with exception: [Rank {rank}] Watchdog caught collective operation "
    "timeout: WorkNCCL(SeqNum=911207, "
    "OpType=ALLREDUCE, NumelIn=26214400, NumelOut=26214400, Timeout(ms)=1800000) ran for "
    "1800501 milliseconds "
    "before timing out.\n"
)
REMOTE_ERROR = (
    "[E ProcessGroupNCCL.cpp:455] Some NCCL operations have failed or timed out. "
    "terminate called after throwing an "
    "instance of 'std::runtime_error' what(): NCCL error: remote process exited or there "
    "was a network error, NCCL "
    "version 2.14.3 ncclRemoteError: A call failed possibly due to a network error or a "
    "remote process exiting "
    "prematurely.\n"
)


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_xid79_on_one_gpu_explains_watchdog_timeouts_on_every_node(tmp_path: Path) -> None:
    for n, node in enumerate(("node-01", "node-02", "node-03")):
        write(
            tmp_path,
            f"{node}/train.log",
            "".join(WATCHDOG.format(rank=8 * n + r) for r in range(8) if r != 5),
        )
        write(
            tmp_path,
            f"{node}/dmesg.log",
            "[   11.771032] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  535.183.01\n",
        )
    write(
        tmp_path,
        "node-03/dmesg.log",
        "[221684.337896] NVRM: Xid (PCI:0000:3b:00): 79, pid=3318842, name=python, GPU has "
        "fallen off the bus.\n",
    )
    out = investigate(tmp_path).to_dict()
    assert out["incident"] is True
    top = out["root_causes"][0]
    assert (top["layer"], top["node"], top["gpu_pci_bus_id"], top["kind"]) == (
        "gpu_hardware",
        "node-03",
        "0000:3b:00.0",
        "xid:79",
    )
    assert len(out["root_causes"]) == 1
    (watchdog,) = [s for s in out["symptoms"] if s["kind"] == "c10d_watchdog_timeout:911207"]
    assert watchdog["explained_by"] == 0 and watchdog["layer"] == "framework"
    assert "21 ranks" in watchdog["summary"]
    assert "rank(s) 5, 13, 21 never reported" in watchdog["summary"]


def test_a_memory_xid_outranks_many_application_xids_on_other_gpus(tmp_path: Path) -> None:
    app = "".join(
        f"[Wed Jul 31 23:{m:02d}:18 2024] NVRM: Xid (PCI:0000:00:05): 43, pid=1045242, name=pt_main_thread, "
        "Ch 00000008\n"
        for m in range(50)
    )
    app += (
        "[Mon Aug  5 03:54:13 2024] NVRM: Xid (PCI:0000:00:07): 31, pid=2512125, "
        "name=python3.10, Ch 00000008, "
        "intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_8 faulted @ 0x73ac_1c000000. "
        "Fault is of type "
        "FAULT_PDE ACCESS_TYPE_VIRT_WRITE\n"
    )
    app += (
        "[Fri Aug  9 13:32:56 2024] NVRM: Xid (PCI:0000:00:08): 94, pid='<unknown>', name=<unknown>, "
        "Contained: SM (0x1). RST: No, D-RST: No\n"
    )
    write(tmp_path, "node-01/dmesg.log", app)
    causes = investigate(tmp_path).to_dict()["root_causes"]
    assert [(c["kind"], c["layer"], c["gpu_pci_bus_id"]) for c in causes] == [
        ("xid:94", "gpu_memory", "0000:00:08.0"),
        ("xid:31", "job", "0000:00:07.0"),
        ("xid:43", "job", "0000:00:05.0"),
    ]


def test_application_xid_explains_a_later_context_switch_timeout_on_the_same_gpu(tmp_path: Path) -> None:
    write(
        tmp_path,
        "node-01/dmesg.log",
        "[Fri Aug 30 11:43:09 2024] NVRM: Xid (PCI:0000:cb:00): 13, pid='<unknown>', "
        "name=<unknown>, Graphics SM "
        "Warp Exception on (GPC 7, TPC 7, SM 0): Illegal Instruction Parameter\n"
        "[Fri Aug 30 11:43:14 2024] NVRM: Xid (PCI:0000:cb:00): 109, pid=1797828, name=pt_main_thread, "
        "Ch 00000008, errorString CTX SWITCH TIMEOUT, Info 0x58005\n",
    )
    out = investigate(tmp_path).to_dict()
    assert [c["kind"] for c in out["root_causes"]] == ["xid:13"]
    assert out["root_causes"][0]["layer"] == "job"
    assert [(s["kind"], s["explained_by"]) for s in out["symptoms"]] == [("xid:109", 0)]


def test_the_same_context_switch_timeout_alone_is_a_cause(tmp_path: Path) -> None:
    write(
        tmp_path,
        "node-01/dmesg.log",
        "[Fri Aug 30 11:43:14 2024] NVRM: Xid (PCI:0000:cb:00): 109, pid=1797828, name=pt_main_thread, "
        "Ch 00000008, errorString CTX SWITCH TIMEOUT, Info 0x58005\n",
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["kind"], top["layer"]) == ("xid:109", "gpu_hardware")


def test_ib_completion_error_explains_nccl_remote_error(tmp_path: Path) -> None:
    write(tmp_path, "node-01/train.log", REMOTE_ERROR)
    write(
        tmp_path,
        "node-02/nccl.log",
        "node-02:35:89 [5] transport/net_ib.cc:1296 NCCL WARN NET/IB : Got completion from "
        "peer 10.0.0.1<39138> "
        "with error 13, opcode 0, len 0, vendor err 129\n",
    )
    out = investigate(tmp_path).to_dict()
    top = out["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("ib_wc_status:13", "network", "node-02")
    assert "IBV_WC_RNR_RETRY_EXC_ERR" in top["summary"]
    assert [(s["kind"], s["explained_by"]) for s in out["symptoms"]] == [("nccl_result:ncclRemoteError", 0)]


def test_symptoms_alone_are_an_incident_without_a_confident_cause(tmp_path: Path) -> None:
    write(tmp_path, "node-01/train.log", "".join(WATCHDOG.format(rank=r) for r in range(4)))
    out = investigate(tmp_path).to_dict()
    assert out["incident"] is True
    top = out["root_causes"][0]
    assert top["kind"] == "c10d_watchdog_timeout:911207"
    assert top["confidence"] <= 0.3 and top["certainty"] == "unsure"


def test_bus_id_maps_to_index_only_within_the_node_that_states_it(tmp_path: Path) -> None:
    dcgm = (
        'DCGM_FI_DEV_SM_CLOCK{gpu="6",UUID="GPU-1",pci_bus_id="00000000:BA:00.0",device="nvidia6",'
        'Hostname="node-03"} 1980\n'
    )
    xid = "[ 100.0] NVRM: Xid (PCI:0000:ba:00): 48, pid=1, name=python, An uncorrectable double bit error\n"
    write(tmp_path, "node-03/metrics.prom", "# TYPE DCGM_FI_DEV_SM_CLOCK gauge\n" + dcgm)
    write(tmp_path, "node-03/dmesg.log", xid)
    write(tmp_path, "node-04/dmesg.log", xid.replace("48,", "79,"))
    causes = {c["node"]: c for c in investigate(tmp_path).to_dict()["root_causes"]}
    assert (causes["node-03"]["gpu"], causes["node-03"]["layer"]) == (6, "gpu_memory")
    assert (causes["node-04"]["gpu"], causes["node-04"]["gpu_pci_bus_id"]) == (None, "0000:ba:00.0")


def test_healthy_bundle_is_not_an_incident(tmp_path: Path) -> None:
    smi = (
        Path(__file__).resolve().parents[2]
        / "fleetscope/examples/incidents/32-healthy-nvidia-smi-q-idle-no-throttle"
        / "node-01/nvidia-smi-q.txt"
    ).read_text()
    write(tmp_path, "node-01/smi.txt", smi)
    write(
        tmp_path,
        "node-01/nccl.log",
        "node-01:1929:1937 [0] NCCL INFO cudaDev 0 nvmlDev 0 busId 84000 commId 0x1 - Init START\n"
        "node-01:1929:1937 [0] NCCL INFO Init COMPLETE\n",
    )
    write(
        tmp_path,
        "node-01/apt-history.log",
        "Start-Date: 2021-06-04  06:41:09\nCommandline: apt-get install nvidia-driver-535\n"
        "Install: nvidia-driver-535:amd64 (535.104.05-0ubuntu1)\nEnd-Date: 2021-06-04  06:41:30\n",
    )
    out = investigate(tmp_path).to_dict()
    assert out["incident"] is False and out["root_causes"] == []


def test_efa_provider_error_is_named_from_the_libfabric_catalogue(tmp_path: Path) -> None:
    write(
        tmp_path,
        "nccl.log",
        "[1,3]<stdout>:node-04:7:7 [0] NCCL WARN NET/OFI Request 0x7f456c224810 completed with error. "
        "RC: 103. Error: 4126 (Unresponsive receiver (reachable by EFA device but handshake failed)\n",
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["layer"], top["node"]) == ("network", "node-04")
    assert "FI_EFA_ERR_UNESTABLISHED_RECV_UNRESP" in top["summary"]


def test_nvidia_smi_err_row_names_the_lost_gpu(tmp_path: Path) -> None:
    write(
        tmp_path,
        "node-05/nvidia-smi.txt",
        "|   0  NVIDIA A100-SXM4-80GB          On  |   00000000:07:00.0 Off |                    0 |\n"
        "|   1  NVIDIA A100-SXM4-80GB          On  |   00000000:0B:00.0 Off |                 ERR! |\n",
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["layer"], top["node"], top["gpu"], top["gpu_pci_bus_id"]) == (
        "gpu_hardware",
        "node-05",
        1,
        "0000:0b:00.0",
    )


def test_gpu_at_its_slowdown_temperature_is_a_thermal_fault(tmp_path: Path) -> None:
    smi = (
        Path(__file__).resolve().parents[2]
        / "fleetscope/examples/incidents/32-healthy-nvidia-smi-q-idle-no-throttle/node-01/nvidia-smi-q.txt"
    ).read_text()
    write(
        tmp_path,
        "node-01/smi.txt",
        smi.replace("GPU Current Temp            : 37 C", "GPU Current Temp            : 94 C"),
    )
    top = investigate(tmp_path).to_dict()["root_causes"][0]
    assert (top["layer"], top["gpu"], top["gpu_pci_bus_id"]) == ("thermal_power", 0, "0000:84:00.0")
    assert "94 C" in top["summary"]


def test_syslog_stamps_take_the_year_of_the_nodes_other_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        "node-01/kernel.log",
        "Nov  4 07:41:24 node-01 kernel: NVRM: Xid (PCI:0000:3b:00): 79, pid=1, "
        "GPU has fallen off the bus.\n",
    )
    write(tmp_path, "node-01/train.log", WATCHDOG.format(rank=0))
    out = investigate(tmp_path).to_dict()
    xid_line = next(t for t in out["timeline"] if t["source"] == "node-01/kernel.log:1")
    assert (xid_line["time"], xid_line["time_raw"]) == ("2024-11-04T07:41:24+00:00", "Nov  4 07:41:24")
    # Ordered by time: the Xid two days before the watchdog fired.
    assert out["timeline"][0]["source"] == "node-01/kernel.log:1"
