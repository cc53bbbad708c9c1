"""Events that recover are context; module-signature rejection is host software; a lone barrier timeout
points at the job's timeout, unsure.

Line shapes, per constant: the Linux kernel's and kmod's own messages, Lustre's ptlrpc import
messages, nvidia-installer's, PyTorch's ProcessGroupNCCL watchdog.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.judging import diagnose

# drivers/pci/pcie/aer.c and err.c: a non-fatal uncorrected error, its bits, then the AER core's verdict.
AER = (
    "[ 100.000001] pcieport 0000:3a:00.0: AER: Uncorrected (Non-Fatal) error received: 0000:3b:00.0\n"
    "[ 100.000002] nvidia 0000:3b:00.0: PCIe Bus Error: severity=Uncorrected (Non-Fatal), type=Transaction "
    "Layer, (Requester ID)\n"
    "[ 100.000003] nvidia 0000:3b:00.0:   device [10de:2330] error status/mask=00004000/00000000\n"
    "[ 100.000004] nvidia 0000:3b:00.0:    [14] CmpltTO                (First)\n"
)
AER_RECOVERED = "[ 100.000010] pcieport 0000:3a:00.0: AER: device recovery successful\n"
XID79 = "[ 160.000000] NVRM: Xid (PCI:0000:3b:00): 79, pid=2231, name=python, GPU has fallen off the bus.\n"
# Lustre ptlrpc import messages (lustre/ptlrpc/import.c), syslog stamps.
LUSTRE_LOST = (
    "Mar  4 10:00:01 node-01 kernel: Lustre: lustre-OST0003-osc-ffff8a: Connection to lustre-OST0003 "
    "(at 10.0.0.7@o2ib) was lost; in progress operations using this service will wait for recovery to "
    "complete\n"
)
LUSTRE_BACK = (
    "Mar  4 10:00:{s:02d} node-01 kernel: Lustre: lustre-OST0003-osc-ffff8a: Connection restored to "
    "10.0.0.7@o2ib (at 10.0.0.7@o2ib)\n"
)
# fs/nfs: "nfs: server %s not responding, still trying" and "nfs: server %s OK".
NFS_LOST = "[ 3223.539141] nfs: server fs-01 not responding, still trying\n"
NFS_BACK = "[ {t:.6f}] nfs: server fs-01 OK\n"
# kernel/hung_task.c, after the NFS loss.
HUNG = "[ 3438.580109] INFO: task python:24916 blocked for more than 120 seconds.\n"
# mlx5e carrier messages.
LINK_DOWN = "[ 500.100000] mlx5_core 0000:0c:00.0 ens1f0np0: Link down\n"
LINK_UP = "[ 503.200000] mlx5_core 0000:0c:00.0 ens1f0np0: Link up\n"


def test_aer_recovered_alone_is_no_incident(tmp_path: Path) -> None:
    report = diagnose(tmp_path, {"node-01/dmesg.txt": AER + AER_RECOVERED})
    assert report["incident"] is False
    assert any("AER" in t["text"] for t in report["timeline"])


def test_aer_without_recovery_is_still_an_incident(tmp_path: Path) -> None:
    top = diagnose(tmp_path, {"node-01/dmesg.txt": AER})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("pcie_aer_uncorrected", "gpu_hardware", "node-01")


def test_aer_recovered_but_the_gpu_fell_off_later_is_the_xid(tmp_path: Path) -> None:
    top = diagnose(tmp_path, {"node-01/dmesg.txt": AER + AER_RECOVERED + XID79})["root_causes"][0]
    assert (top["kind"], top["node"], top["gpu_pci_bus_id"]) == ("xid:79", "node-01", "0000:3b:00.0")


@pytest.mark.parametrize(("back_after", "incident"), [(8, False), (59, False)])
def test_lustre_lost_and_restored_within_seconds_is_context(
    tmp_path: Path, back_after: int, incident: bool
) -> None:
    text = LUSTRE_LOST + LUSTRE_BACK.format(s=1 + back_after)
    assert diagnose(tmp_path, {"node-01/kern.log": text})["incident"] is incident


def test_lustre_lost_for_good_is_a_storage_incident(tmp_path: Path) -> None:
    top = diagnose(tmp_path, {"node-01/kern.log": LUSTRE_LOST})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("connection_lost:lustre", "storage", "node-01")


def test_lustre_restored_after_minutes_is_an_incident(tmp_path: Path) -> None:
    back = LUSTRE_BACK.format(s=0).replace("10:00:00", "10:09:00")
    top = diagnose(tmp_path, {"node-01/kern.log": LUSTRE_LOST + back})["root_causes"][0]
    assert (top["kind"], top["layer"]) == ("connection_lost:lustre", "storage")
    assert "539 s" in top["summary"]


def test_nfs_back_quickly_is_context_but_not_when_a_task_hung(tmp_path: Path) -> None:
    quick = NFS_LOST + NFS_BACK.format(t=3230.0)
    assert diagnose(tmp_path / "a", {"node-02/dmesg.log": quick})["incident"] is False
    hurt = NFS_LOST + NFS_BACK.format(t=3430.0) + HUNG
    top = diagnose(tmp_path / "b", {"node-02/dmesg.log": hurt})["root_causes"][0]
    assert (top["layer"], top["node"]) == ("storage", "node-02")


def test_a_link_that_came_back_is_context_and_one_that_stayed_down_is_not(tmp_path: Path) -> None:
    assert diagnose(tmp_path / "a", {"node-03/dmesg.log": LINK_DOWN + LINK_UP})["incident"] is False
    top = diagnose(tmp_path / "b", {"node-03/dmesg.log": LINK_DOWN})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == ("connection_lost:link", "network", "node-03")


SIGNING = [
    # kmod modprobe quoting strerror(EKEYREJECTED).
    "modprobe: ERROR: could not insert 'nvidia': Key was rejected by service\n",
    # nvidia-installer's Secure Boot message.
    "ERROR: The kernel module failed to load. Secure boot is enabled on this system, so this is likely "
    "because it was not signed by a key that is trusted by the kernel. Please try installing the driver "
    "again, and sign the kernel module when prompted to do so.\n",
    # security/lockdown/lockdown.c.
    "[   12.345678] Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7\n",
    # kernel/module/signing.c under module.sig_enforce.
    "[   12.345678] Loading of unsigned module is rejected\n",
    # certs/system_keyring.c.
    "[   12.345678] PKCS#7 signature not signed with a trusted key\n",
]


@pytest.mark.parametrize("line", SIGNING)
def test_module_signature_rejection_is_host_software(tmp_path: Path, line: str) -> None:
    top = diagnose(tmp_path, {"node-01/install.log": line})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"]) == (
        "signature:module_signature_rejected",
        "host_software",
        "node-01",
    )
    assert "MOK" in top["action"]


def test_installer_load_failure_alone_is_host_software(tmp_path: Path) -> None:
    line = (
        "ERROR: Unable to load the kernel module 'nvidia.ko'.  This happens most frequently when this "
        "kernel module was built against the wrong or improperly configured kernel sources.\n"
    )
    top = diagnose(tmp_path, {"node-01/nvidia-installer.log": line})["root_causes"][0]
    assert (top["layer"], top["node"]) == ("host_software", "node-01")


def test_a_tainting_unsigned_module_that_loaded_is_no_incident(tmp_path: Path) -> None:
    # Without enforcement the kernel loads the module and only taints itself (kernel/module/signing.c).
    line = (
        "[   12.3] nvidia: module verification failed: signature and/or required key missing - tainting "
        "kernel\n"
    )
    assert diagnose(tmp_path, {"node-01/dmesg.log": line})["incident"] is False


# PyTorch ProcessGroupNCCL watchdog: a barrier (newer: OpType=BARRIER; older: a one-element ALLREDUCE).
WATCHDOG = (
    "[rank{r}]:[E1104 10:31:02.123456 312 ProcessGroupNCCL.cpp:616] [Rank {r}] Watchdog caught collective "
    "operation timeout: WorkNCCL(SeqNum=4821, OpType={op}, NumelIn={n}, NumelOut={n}, Timeout(ms)=600000) "
    "ran for 600043 milliseconds before timing out.\n"
)


@pytest.mark.parametrize(("op", "n"), [("BARRIER", 1), ("ALLREDUCE", 1)])
def test_a_lone_barrier_timeout_points_at_the_jobs_timeout_unsure(tmp_path: Path, op: str, n: int) -> None:
    text = "".join(WATCHDOG.format(r=r, op=op, n=n) for r in range(1, 8))
    top = diagnose(tmp_path, {"node-01/train.log": text})["root_causes"][0]
    assert (top["kind"], top["layer"]) == ("c10d_barrier_timeout", "job")
    assert top["certainty"] == "unsure" and "timeout" in top["action"]
    assert top["confidence"] <= 0.3


def test_a_big_collective_timeout_is_not_read_as_a_barrier(tmp_path: Path) -> None:
    text = WATCHDOG.format(r=3, op="ALLREDUCE", n=26214400)
    top = diagnose(tmp_path, {"node-01/train.log": text})["root_causes"][0]
    assert top["kind"] != "c10d_barrier_timeout"


def test_a_barrier_timeout_beside_a_fault_leaves_the_fault_first(tmp_path: Path) -> None:
    files = {
        "node-01/train.log": WATCHDOG.format(r=3, op="BARRIER", n=1),
        "node-02/dmesg.log": XID79,
    }
    report = diagnose(tmp_path, files)
    assert report["root_causes"][0]["kind"] == "xid:79"
    assert all(r["kind"] != "c10d_barrier_timeout" for r in report["root_causes"])


def test_nvlink_link_messages_are_not_network_links(tmp_path: Path) -> None:
    text = "[ 500.1] NVRM: Link down\n[ 500.2] nvidia-nvswitch0: Link down\n"
    assert diagnose(tmp_path, {"node-03/dmesg.log": text})["incident"] is False


def test_aer_recovered_but_a_cuda_error_followed_stays_a_cause(tmp_path: Path) -> None:
    # The application's CUDA error after the "recovery": something downstream suffered.
    cuda = "[ 101.500000] python[2231]: RuntimeError: CUDA error: unspecified launch failure\n"
    report = diagnose(tmp_path, {"node-01/dmesg.txt": AER + AER_RECOVERED + cuda})
    kinds = [r["kind"] for r in report["root_causes"]]
    assert "pcie_aer_uncorrected" in kinds
    aer = next(r for r in report["root_causes"] if r["kind"] == "pcie_aer_uncorrected")
    assert "reports the device recovered" in aer["summary"]
