"""The tuned set: incidents reconstructed from public reports, each fixed against (the engine was changed in
the commits that added them), so passing them measures the tuning, not how the engine generalises.

Each folder under ``tests/collectors/tuned`` is a bundle like those of ``examples/incidents`` (its
``case.json`` names the report and what was reconstructed); the diagnosis must match by the judging
rule of the shared ``score_cases.py`` (:mod:`tests.collectors.judging`). The frozen set, scored before any
fix and never tuned on, is ``tests/collectors/frozen``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.judging import check_case, diagnose

CASES = sorted((Path(__file__).parent / "tuned").glob("*/case.json"))


def test_the_tuned_set_is_present() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case_json", CASES, ids=[c.parent.name for c in CASES])
def test_tuned_diagnosis(case_json: Path) -> None:
    check_case(case_json)


def test_a_user_stop_does_not_hide_an_application_error_xid(tmp_path: Path) -> None:
    # Ctrl-C explains Xid 43 (a warning-level teardown) but not Xid 13, a real fault in the kernel code.
    out = diagnose(
        tmp_path,
        {
            "node-01/train.log": "[default0]:KeyboardInterrupt\n",
            "node-01/dmesg.txt": (
                "[5.1] NVRM: Xid (PCI:0000:18:00): 13, pid=7, name=python, "
                "Graphics Exception: ESR 0x404490=0x80000001\n"
                "[5.2] NVRM: Xid (PCI:0000:2a:00): 43, pid=8, name=python, Ch 00000008\n"
            ),
        },
    )
    assert out["incident"] is True
    assert out["root_causes"][0]["kind"] == "xid:13"
    assert [r["kind"] for r in out["root_causes"]].count("xid:43") == 0


def test_an_oom_kill_of_another_pid_stays_the_jobs(tmp_path: Path) -> None:
    # The OOM victim (pid 500) is not the DataLoader worker PyTorch reported dead (pid 12847).
    out = diagnose(
        tmp_path,
        {
            "node-01/train.log": "RuntimeError: DataLoader worker (pid 12847) is killed by signal: Killed.\n",
            "node-01/kern.log": "[9.0] Out of memory: Killed process 500 (python) total-vm:1kB\n",
        },
    )
    kinds = {r["kind"]: r["layer"] for r in out["root_causes"]}
    assert kinds["signature:host_oom_killer"] == "job"


def _top(tmp_path: Path, files: dict[str, str]) -> dict[str, object]:
    out = diagnose(tmp_path, files)
    return out["root_causes"][0] if out["incident"] else {}


def test_nvlink_errors_spread_over_many_links_are_noise(tmp_path: Path) -> None:
    # nvidia-smi nvlink -e: a few CRC errors on every link of every GPU, no link far above the rest.
    rows = "".join(
        f"GPU {g}: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-00000000000{g})\n"
        + "".join(f"\t Link {link}: CRC Errors: {3 + (g + link) % 4}\n" for link in range(18))
        for g in range(8)
    )
    assert _top(tmp_path, {"node-01/nvlink.txt": rows}) == {}


def test_an_ib_port_in_init_state_is_the_answer_over_peer_symptoms(tmp_path: Path) -> None:
    port = (
        "# TYPE node_infiniband_port_state_id gauge\n"
        'node_infiniband_port_state_id{{device="mlx5_0",port="1"}} {}\n'
    )
    top = _top(
        tmp_path,
        {
            "node-01/m.prom": port.format(4),
            "node-02/m.prom": port.format(2),
            "node-01/train.log": "[rank0]:[E ProcessGroupNCCL.cpp:563] [Rank 0] Watchdog caught collective "
            "operation timeout: WorkNCCL(SeqNum=5, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, "
            "Timeout(ms)=600000) ran for 600010 milliseconds before timing out.\n",
        },
    )
    assert (top["layer"], top["node"], top["kind"]) == ("network", "node-02", "ib_port_not_active")


def test_nccl_tests_need_three_nodes_to_name_a_slow_one(tmp_path: Path) -> None:
    files = {f"node-0{n}/t.txt": f"# Avg bus bandwidth    : {bw} \n" for n, bw in ((1, 480.2), (2, 90.1))}
    assert _top(tmp_path, files) == {}
    files["node-03/t.txt"] = "# Avg bus bandwidth    : 475.9 \n"
    top = _top(tmp_path, files)
    assert (top["layer"], top["node"]) == (None, "node-02")
    assert top["certainty"] == "unsure"


def test_a_scheduler_log_names_the_node_it_speaks_of(tmp_path: Path) -> None:
    top = _top(
        tmp_path,
        {
            "slurm-77.out": "slurmstepd: error: *** JOB 77 ON gpu-a17 CANCELLED AT "
            "2024-01-02T03:04:05 DUE TO TIME LIMIT ***\n"
        },
    )
    assert (top["layer"], top["node"], top["kind"]) == ("job", "gpu-a17", "signature:slurm_time_limit")


def test_torchrun_signal_table(tmp_path: Path) -> None:
    block = "  exitcode  : -{n} (pid: 100)\n  traceback : Signal {n} ({name}) received by PID 100\n"
    bus = _top(tmp_path / "bus", {"node-01/run.log": block.format(n=7, name="SIGBUS")})
    assert bus["layer"] == "data_pipeline"
    # SIGKILL alone is a symptom (killed from outside); with the kernel's OOM kill the OOM is the cause.
    kill = _top(tmp_path / "kill", {"node-01/run.log": block.format(n=9, name="SIGKILL")})
    assert kill["confidence"] <= 0.4 and kill["certainty"] == "unsure"
    oom = _top(
        tmp_path / "oom",
        {
            "node-01/run.log": block.format(n=9, name="SIGKILL"),
            "node-01/dmesg": "[9.1] Out of memory: Killed process 100 (python) total-vm:1kB\n",
        },
    )
    assert (oom["layer"], oom["kind"]) == ("job", "signature:host_oom_killer")


def test_peer_memory_module_is_the_network_path_not_the_driver(tmp_path: Path) -> None:
    top = _top(
        tmp_path,
        {"node-01/m.txt": "modprobe: ERROR: could not insert 'nvidia_peermem': Invalid argument\n"},
    )
    assert (top["layer"], top["kind"]) == ("network", "signature:peer_memory_module_failed")


def test_a_normal_loss_scale_drop_is_no_incident(tmp_path: Path) -> None:
    line = "Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to {}\n"
    assert _top(tmp_path / "ok", {"node-01/t.log": line.format("32768.0")}) == {}
    top = _top(tmp_path / "bad", {"node-01/t.log": line.format("1.012e-320")})
    assert top["confidence"] <= 0.4 and top["certainty"] == "unsure"


def test_kmsg_records_give_the_kernel_uptime(tmp_path: Path) -> None:
    out = diagnose(
        tmp_path,
        {
            "node-01/kmsg": "4,48811,8210458812,-;NVRM: Xid (PCI:0000:2a:00): 79, pid='<unknown>', "
            "name=<unknown>, GPU has fallen off the bus.\n"
        },
    )
    assert out["root_causes"][0]["kind"] == "xid:79"
    assert out["timeline"][0]["time_raw"] == "4,48811,8210458812,-;"
    assert out["timeline"][0]["text"].endswith("GPU has fallen off the bus.")


def test_a_multi_line_nvrm_message_with_a_prefix_on_every_line_is_one_message(tmp_path: Path) -> None:
    # journalctl -k repeats "date host kernel:" on each continuation line of the driver's notice.
    head = "Feb 14 05:09:12 node-01 kernel: NVRM: "
    top = _top(
        tmp_path,
        {
            "node-01/journal": f"{head}The NVIDIA GPU 0000:ab:00.0\n"
            f"{head}(PCI ID: 10de:2330) installed in this system has\n"
            f"{head}fallen off the bus and is not responding to commands.\n"
            f"{head}GPU at PCI:0000:1b:00: GPU-00000000-0000-0000-0000-000000000001\n"
        },
    )
    assert (top["layer"], top["gpu_pci_bus_id"]) == ("gpu_hardware", "0000:ab:00.0")
    assert "fallen off the bus" in str(top["evidence"])


def test_a_kernel_stall_after_an_application_xid_leaves_the_cause_open(tmp_path: Path) -> None:
    xid = "[100.0] NVRM: Xid (PCI:0000:0a:00): 31, pid=5, name=python, Ch 00000018, intr 0. MMU Fault\n"
    alone = _top(tmp_path / "alone", {"node-01/dmesg": xid})
    assert alone["layer"] == "job" and alone["certainty"] != "unsure"
    stalled = _top(
        tmp_path / "stall",
        {"node-01/dmesg": xid + "[140.0] rcu: INFO: rcu_sched self-detected stall on CPU\n"},
    )
    assert stalled["confidence"] <= 0.4 and stalled["certainty"] == "unsure"
    # A stall on another node says nothing about this one.
    other = _top(
        tmp_path / "other",
        {"node-01/dmesg": xid, "node-02/dmesg": "[140.0] rcu: INFO: rcu_sched self-detected stall on CPU\n"},
    )
    assert other["certainty"] != "unsure"


def test_fabric_manager_failure_is_the_cause_of_cuda_802(tmp_path: Path) -> None:
    top = _top(
        tmp_path,
        {
            "node-01/fm.log": "[Mar 12 2024 10:02:11] [ERROR] [tid 2210] fabric manager NVIDIA GPU driver "
            "interface version 550.54.15 don't match with driver version 550.54.14. Please update with "
            "matching NVIDIA driver package.\n",
            "node-01/train.log": "RuntimeError: CUDA error: system not yet initialized\n",
        },
    )
    assert (top["layer"], top["kind"]) == ("host_software", "signature:fabric_manager_failed")


def test_an_aborted_nccl_connect_alone_is_a_network_cause(tmp_path: Path) -> None:
    line = (
        "node-01:1234:1300 [0] misc/socket.cc:484 NCCL WARN socketStartConnect: Connect to "
        "10.0.0.2<43619> failed : Software caused connection abort\n"
    )
    top = _top(tmp_path, {"node-01/nccl.log": line})
    assert (top["layer"], top["kind"]) == ("network", "nccl_warn:socket_connect_aborted")
