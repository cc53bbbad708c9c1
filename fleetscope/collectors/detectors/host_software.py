"""Driver and kernel-module state: package changes, module missing for the running kernel, mismatches.

* A change to NVIDIA driver packages (apt history, dpkg log) is a cause only when the same node also
  shows the driver broken (nvidia-smi cannot reach it, NVML version mismatch, module missing or failing
  to load); otherwise it is context. Unattended upgrades are named as such.
* ``uname`` naming the running kernel while the NVIDIA modules exist only under other kernels'
  ``/lib/modules/<release>`` means the driver was not built for the running kernel (no DKMS), unless
  ``lsmod`` shows the ``nvidia`` module loaded after all.
* NVRM's ``API mismatch`` and module ``Unknown symbol`` errors are causes by themselves.
* Kernel soft lockups and RCU stalls are context (``KERNEL_STALL``): the correlator uses them to doubt
  that an application Xid on the same node is the whole story.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetscope.collectors.detectors.base import Detector
from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.knowledge import scoring

#: Signature ids and evidence kinds that show a node's driver stack broken.
_BROKEN = {
    "nvidia_smi_driver_unreachable",
    "nvml_version_mismatch",
    "module_not_found",
    "module_insert_failed",
    "nvidia_smi_no_devices",
}
_BROKEN_KINDS = {"driver_api_mismatch", "module_load_error", "driver_probe_failed", "rm_init_failed"}
#: Kind of the context finding for a kernel soft lockup, hard lockup or RCU stall on a node.
KERNEL_STALL = "kernel_stall"


class HostSoftwareDetector(Detector):
    """Driver packages, kernel modules and their versions."""

    name = "host_software"

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        broken: set[str | None] = set()
        changes: dict[str | None, list[Evidence]] = {}
        running: dict[str | None, Evidence] = {}
        modules: dict[str | None, dict[str, list[Evidence]]] = {}
        stalls: dict[str | None, list[Evidence]] = {}
        loaded: set[str | None] = set()  # nodes whose lsmod shows the nvidia module loaded
        for e in evidence:
            if e.kind == "module_loaded" and e.attrs["module"] == "nvidia":
                loaded.add(e.node)
            if e.kind == "kernel_lockup":
                stalls.setdefault(e.node, []).append(e)
            if (e.kind == "signature" and e.attrs["signature"] in _BROKEN) or e.kind in _BROKEN_KINDS:
                broken.add(e.node)
            if e.kind == "package_change" and "nvidia" in e.attrs["package"]:
                changes.setdefault(e.node, []).append(e)
            elif e.kind == "kernel_release" and e.attrs.get("running"):
                running[e.node] = e
            elif e.kind in ("module_file", "dkms_module"):
                modules.setdefault(e.node, {}).setdefault(e.attrs["release"], []).append(e)
            elif e.kind == "driver_api_mismatch":
                yield Finding(
                    explains="cluster",
                    kind="driver_api_mismatch",
                    layer="host_software",
                    role="cause",
                    severity="error",
                    weight=scoring("host_software.api_mismatch_weight"),
                    summary=f"On {e.node} the NVIDIA user-space driver ({e.attrs['client_version']}) "
                    "and kernel "
                    f"module ({e.attrs['kernel_version']}) differ",
                    action="reboot or reload the nvidia modules so both come from the same driver "
                    "installation",
                    node=e.node,
                    evidence=[e],
                )
            elif e.kind == "module_load_error":
                yield Finding(
                    explains="cluster",
                    kind="module_load_error",
                    layer="host_software",
                    role="cause",
                    severity="error",
                    weight=scoring("host_software.module_load_error_weight"),
                    summary=f"The {e.attrs['module']} module on {e.node} failed to load: "
                    f"{e.attrs['message'][:150]}",
                    action="rebuild the NVIDIA module for the running kernel (DKMS) or reinstall the driver",
                    node=e.node,
                    evidence=[e],
                )
        for node, evs in stalls.items():
            yield Finding(
                explains="cluster",
                kind=KERNEL_STALL,
                layer="host_software",
                role="context",
                severity="warning",
                weight=scoring("host_software.context_weight"),
                summary=f"The kernel on {node} reported a stall ({evs[0].attrs['what']})",
                node=node,
                evidence=evs[:5],
                count=len(evs),
            )
        for node, evs in changes.items():
            unattended = any(e.attrs.get("unattended") for e in evs)
            packages = ", ".join(
                sorted({f"{e.attrs['package']} {e.attrs['old']} -> {e.attrs['new']}".strip() for e in evs})[
                    :4
                ]
            )
            by = "unattended-upgrades" if unattended else "a package operation"
            is_cause = node in broken
            yield Finding(
                explains="cluster",
                kind="driver_packages_changed",
                layer="host_software",
                role="cause" if is_cause else "context",
                severity="error" if is_cause else "info",
                weight=scoring(
                    "host_software.package_change_cause_weight"
                    if is_cause
                    else "host_software.context_weight"
                ),
                summary=f"{by.capitalize()} changed the NVIDIA driver packages on {node} ({packages})"
                + (" and the driver stopped working: not a GPU hardware fault" if is_cause else ""),
                action="reinstall the NVIDIA driver cleanly (same version for all its packages), reboot, and "
                "exclude NVIDIA packages from unattended-upgrades (or disable it) so the driver only changes "
                "on purpose",
                node=node,
                evidence=evs,
            )
        for node, kernel in running.items():
            built = modules.get(node, {})
            release = kernel.attrs["release"]
            here = built.get(release, [])
            if (
                not built
                or node in loaded  # lsmod: the running kernel has the module, wherever it came from
                or any(e.kind == "dkms_module" or e.attrs["module"] == "nvidia" for e in here)
            ):
                continue
            others = sorted(
                r
                for r, evs in built.items()
                if r != release
                and any(e.attrs.get("module") == "nvidia" or e.kind == "dkms_module" for e in evs)
            )
            if not others:
                continue
            yield Finding(
                explains="cluster",
                kind="module_missing_for_running_kernel",
                layer="host_software",
                role="cause",
                severity="error",
                weight=scoring("host_software.module_missing_weight"),
                summary=f"{node} runs kernel {release} but the NVIDIA kernel module exists only for "
                f"{', '.join(others)}: the driver was not rebuilt for the new kernel",
                action=f"rebuild or reinstall the NVIDIA driver for {release} "
                "(register it with DKMS so kernel "
                "updates rebuild it), or boot the kernel it was built for",
                node=node,
                evidence=[kernel, *[e for r in others for e in built[r]][:5]],
            )
