"""Every evidence kind, declared once: its attributes and their types, its layer, who makes it, who reads it.

The bundle reader checks each piece of evidence a parser makes against its kind's entry (a kind the
parser may not make, an undeclared attribute, a value of the wrong type: the item is dropped, counted and
named in the investigation's notes), and each detector is handed only the kinds whose entry names it as a
reader. Adding a kind is adding one :class:`Kind` to :data:`KINDS`; ``tests/collectors/test_kinds.py``
fails on a kind made but never read, read but never made, or used without an entry.

``metric`` evidence is read per series: each detector that reads it declares the sample names it reads in
its ``series`` (:mod:`fleetscope.collectors.detectors.base`), :func:`series_readers` says who reads a
name, and a sample nobody reads never becomes evidence.

An attribute's type is a Python type or a union; an attribute whose type admits ``None`` may be left out.
:data:`COMMON_ATTRS` may appear on any kind (the reader and the bundle store add them).
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fleetscope.collectors.detectors import DETECTORS
from fleetscope.collectors.evidence import DRIVER_NUMBERING, LAYERS, SEVERITIES, Evidence

#: An attribute's declared type: a class or a union of classes (``int | None``).
AttrType = type | types.UnionType

#: Attributes any kind may carry: the launcher's rank tag, the kernel's uptime stamp, the number of lines
#: a kept item stands for (the bundle store), and the driver-numbering mark of the GPU resolver.
COMMON_ATTRS: Mapping[str, AttrType] = {
    "rank": int | None,
    "uptime_s": float | None,
    "repeats": int | None,
    DRIVER_NUMBERING: bool | None,
}


@dataclass(frozen=True, slots=True)
class Kind:
    """One evidence kind.

    Attributes:
        name: The ``Evidence.kind`` value.
        means: One sentence: what a line of this kind states.
        made_by: ``name`` of each parser that makes it.
        read_by: ``name`` of each detector that reads it (only these detectors are handed it).
        layer: The layer every item of this kind has, or ``None`` where it varies per item (from a
            catalogue entry) or is not known at parse time.
        attrs: Attribute name -> type; a type admitting ``None`` marks the attribute optional.
    """

    name: str
    means: str
    made_by: tuple[str, ...]
    read_by: tuple[str, ...]
    layer: str | None = None
    attrs: Mapping[str, AttrType] = field(default_factory=dict)


_S = str | None
_I = int | None

#: The registry. Parsers and detectors are named by their ``name`` class attribute.
KINDS: tuple[Kind, ...] = (
    Kind(
        "xid",
        "An NVRM Xid line: the driver reports an error on a GPU.",
        ("kernel",),
        ("xid",),
        attrs={"xid": int, "pid": _S, "process": _S, "detail": str, "caused_by_xid": _I, "driver_gpu": _I},
    ),
    Kind(
        "gpu_fallen_off_bus",
        "NVRM says a GPU has fallen off the bus outside an Xid line.",
        ("kernel",),
        ("xid",),
        layer="gpu_hardware",
    ),
    Kind(
        "rm_init_failed",
        "The driver's resource manager could not initialise a GPU (RmInitAdapter failed).",
        ("kernel",),
        ("xid", "host_software"),
        layer="gpu_hardware",
        attrs={"detail": str},
    ),
    Kind(
        "driver_api_mismatch",
        "NVRM's API mismatch: the user-space driver and the kernel module differ in version.",
        ("kernel",),
        ("host_software",),
        layer="host_software",
        attrs={"client_version": str, "kernel_version": str},
    ),
    Kind(
        "driver_probe_failed",
        "The NVIDIA probe routine failed (or was not called) for some devices.",
        ("kernel",),
        ("host_software",),
        layer="host_software",
        attrs={"devices": int},
    ),
    Kind(
        "pcie_aer",
        "A PCIe Advanced Error Reporting line (drivers/pci/pcie/aer.c).",
        ("kernel",),
        ("pcie",),
        layer="gpu_hardware",
        attrs={"driver": str, "device": _S, "message": str, "error_bit": _S},
    ),
    Kind(
        "kernel_lockup",
        "A kernel soft or hard lockup, RCU stall or hung task.",
        ("kernel",),
        ("host_software",),
        layer="host_software",
        attrs={"what": str, "process": _S},
    ),
    Kind(
        "module_load_error",
        "An NVIDIA kernel module failed to load (unknown symbol, symbol version).",
        ("kernel",),
        ("host_software",),
        layer="host_software",
        attrs={"module": str, "message": str},
    ),
    Kind(
        "package_change",
        "apt or dpkg changed a package of the GPU stack.",
        ("host",),
        ("host_software",),
        layer="host_software",
        attrs={"action": str, "package": str, "old": str, "new": str, "commandline": str, "unattended": bool},
    ),
    Kind(
        "kernel_release",
        "``uname -a``: the running kernel release.",
        ("host",),
        ("host_software",),
        attrs={"release": str, "running": bool},
    ),
    Kind(
        "module_file",
        "An NVIDIA module file under /lib/modules/<release>/.",
        ("host",),
        ("host_software",),
        attrs={"release": str, "module": str},
    ),
    Kind(
        "dkms_module",
        "A ``dkms status`` row for an NVIDIA module.",
        ("host",),
        ("host_software",),
        attrs={"module": str, "version": str, "release": str, "arch": str, "state": str},
    ),
    Kind(
        "module_loaded",
        "An ``lsmod`` row: an NVIDIA module is loaded in the running kernel.",
        ("host",),
        ("host_software",),
        attrs={"module": str},
    ),
    Kind(
        "libfabric_warn",
        "A libfabric warning or error line (fi_log format).",
        ("libfabric",),
        ("transport",),
        attrs={"provider": str, "function": str, "message": str, "errno": _I, "prov_err": _S},
    ),
    Kind(
        "ib_completion_error",
        "NCCL's NET/IB got a work completion with an error status (ibv_wc_status).",
        ("nccl",),
        ("transport", "lost_peer"),
        layer="network",
        attrs={"status": int, "peer": _S, "opcode": _S, "vendor_err": _S},
    ),
    Kind(
        "ofi_completion_error",
        "The NCCL OFI plugin saw a request complete with an error (fi_errno, provider errno).",
        ("nccl",),
        ("transport",),
        layer="network",
        attrs={"rc": int, "prov_errno": _I, "error": str},
    ),
    Kind(
        "ofi_call_failed",
        "The NCCL OFI plugin found no usable provider or a libfabric call failed.",
        ("nccl",),
        ("transport",),
        layer="network",
        attrs={"call": str, "error": str},
    ),
    Kind(
        "nccl_warn",
        "An NCCL WARN/ERROR line no more specific kind covers, or NCCL's text PyTorch quotes (``quoted``).",
        ("nccl", "nccl-quoted"),
        ("transport", "lost_peer"),
        attrs={"message": str, "device": _I, "pid": _S, "where": _S, "quoted": bool | None},
    ),
    Kind(
        "ofi_warn",
        "An aws-ofi-nccl ``NET/OFI`` warning: the plugin's own failure, with the libfabric code it quotes.",
        ("nccl",),
        ("efa",),
        layer="network",
        attrs={"message": str, "rc": _I, "error": str, "device": _I, "pid": _S, "where": _S},
    ),
    Kind(
        "efa_abort",
        "The EFA provider's abort banner, with the libfabric and EFA provider error codes it names.",
        ("efa",),
        ("efa",),
        layer="network",
        attrs={"fi_errno": _I, "fi_error": _S, "efa_prov_errno": _I, "efa_prov_error": _S},
    ),
    Kind(
        "memlock_limit",
        "The locked-memory limit a job ran with (``limit_bytes`` ``None``: unlimited).",
        ("efa",),
        ("efa",),
        attrs={"limit_bytes": _I},
    ),
    Kind(
        "transport_peer_error",
        "The EFA provider names a peer it lost or could not reach.",
        ("efa",),
        ("lost_peer",),
        layer="network",
        attrs={"peer": str, "gone": bool, "peer_addr": str, "self_id": _S, "message": str},
    ),
    Kind(
        "host_address",
        "NCCL's bootstrap line: the address and interface a node uses.",
        ("host-address",),
        ("lost_peer",),
        attrs={"address": str, "interface": str},
    ),
    Kind(
        "connection_event",
        "A Lustre, NFS or network-link connection lost or restored (layer: storage, or network for a link).",
        ("connections",),
        ("connections",),
        attrs={"subsystem": str, "state": str, "target": str, "server": _S},
    ),
    Kind(
        "nccl_tests_run",
        "One nccl-tests run: the nodes it spanned and its average bus bandwidth.",
        ("nccl-tests-runs", "nccl-tests-table"),
        ("nccl_tests_runs",),
        attrs={"nodes": list, "busbw_gb_s": float},
    ),
    Kind(
        "gpu_identity",
        "A line that maps a GPU's index, bus id, UUID or rank to each other.",
        ("kernel", "nccl", "nvidia-smi", "nvidia-smi -q", "nvidia-smi --query-gpu", "prometheus"),
        ("transport",),
        attrs={
            "uuid": _S,
            "model": _S,
            "source_field": _S,
            "nranks": _I,
            "init_complete": bool | None,
            "pid": _S,
        },
    ),
    Kind(
        "nccl_tests_busbw",
        "nccl-tests' average bus bandwidth.",
        ("nccl-tests",),
        ("fabric",),
        attrs={"gb_per_s": float},
    ),
    Kind(
        "nccl_tests_wrong_values",
        "nccl-tests counted wrong values (a row's #wrong columns or the out-of-bounds verdict).",
        ("nccl-tests",),
        ("transport",),
        attrs={"count": int, "size_bytes": _I},
    ),
    Kind(
        "c10d_watchdog_timeout",
        "PyTorch's NCCL watchdog caught a collective that did not finish in time.",
        ("pytorch",),
        ("transport", "barrier_timeout"),
        layer="framework",
        attrs={"seq": int, "op": str, "timeout_ms": int, "ran_ms": _I, "numel_in": _I, "numel_out": _I},
    ),
    Kind(
        "nccl_result",
        "An NCCL result code (ncclSystemError ...) quoted in a log.",
        ("pytorch",),
        ("transport",),
        attrs={"result": str},
    ),
    Kind(
        "nccl_failed_or_timed_out",
        "PyTorch's 'Some NCCL operations have failed or timed out'.",
        ("pytorch",),
        ("transport",),
        layer="framework",
    ),
    Kind(
        "exception",
        "A Python exception line (``SomeError: message``).",
        ("pytorch",),
        ("log_signatures",),
        attrs={"type": str, "message": str},
    ),
    Kind(
        "smi_field",
        "One field of nvidia-smi (``-q`` path or ``--query-gpu`` column) and its value.",
        ("nvidia-smi -q", "nvidia-smi --query-gpu", "nvidia-smi"),
        ("gpu_health", "gpu_recovery_action"),
        attrs={"path": str, "value": str},
    ),
    Kind(
        "metric",
        "A Prometheus sample of a family a detector uses.",
        ("prometheus",),
        (
            "xid",
            "gpu_health",
            "peer_deviation",
            "fabric",
            "gpu_recovery_action",
            "absence",
            "persistent_deviation",
            "stragglers",
            "rates",
            "slow_storage",
        ),
        attrs={"name": str, "value": float, "labels": dict},
    ),
    Kind(
        "nvlink_error_counter",
        "``nvidia-smi nvlink -e``: one link's error counter.",
        ("nvidia-smi",),
        ("nvlink",),
        layer="nvlink",
        attrs={"link": int, "counter": str, "value": int},
    ),
    Kind(
        "nvlink_state",
        "``nvidia-smi nvlink -s``: one link's state.",
        ("nvidia-smi",),
        ("nvlink",),
        layer="nvlink",
        attrs={"link": int, "state": str, "up": bool},
    ),
    Kind(
        "nvlink_all_inactive",
        "nvidia-smi says all of a GPU's NVLinks are inactive.",
        ("nvidia-smi",),
        ("nvlink",),
        layer="nvlink",
    ),
    Kind(
        "signature",
        "A line matching a reviewed log signature (knowledge/signatures.yaml).",
        ("signatures", "nvidia-smi"),
        ("log_signatures", "host_software"),
        attrs={"signature": str, "groups": dict},
    ),
    Kind(
        "cuda_error",
        "A CUDA error report named by the CUDA error catalogue.",
        ("signatures",),
        ("log_signatures",),
        attrs={"name": str},
    ),
    Kind(
        "dcgm_health",
        "A DCGM health-watch incident or a ``dcgmi health -c`` row.",
        ("dcgm",),
        ("gpu_health", "gpu_recovery_action"),
        attrs={"system": str, "level": str, "message": str},
    ),
    Kind(
        "dcgm_diag",
        "A failed or warning test of ``dcgmi diag`` (table or ``-j`` JSON), with DCGM's error id if given.",
        ("dcgmi-diag", "dcgmi-diag-json"),
        ("dcgmi_diag",),
        attrs={"test": str, "result": str, "message": str, "error_id": _I},
    ),
    Kind(
        "iteration_time_jump",
        "The training loop's iteration time jumped well above its level.",
        ("training",),
        ("iteration_time_jump",),
        attrs={"before_s": float, "after_s": float, "ratio": float},
    ),
)

#: Kinds by name.
BY_NAME: Mapping[str, Kind] = {k.name: k for k in KINDS}


class EvidenceError(ValueError):
    """Evidence that does not match its kind's entry."""


def reads(detector: str) -> frozenset[str]:
    """The kinds a detector is handed (those whose entry names it in ``read_by``)."""
    return frozenset(k.name for k in KINDS if detector in k.read_by)


def _pattern(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


#: Each detector's ``series`` and ``above_zero`` as one pattern each (None: it declares none).
_SERIES = tuple((d.name, _pattern(d.series), _pattern(d.above_zero)) for d in DETECTORS)


@dataclass(frozen=True, slots=True)
class SeriesReaders:
    """Who reads the ``metric`` samples of one series name (the detectors' ``series`` declarations).

    Attributes:
        every: Detectors (by ``name``) that read its every sample.
        above_zero: Detectors that read only its samples above zero (their ``above_zero``).
    """

    every: frozenset[str]
    above_zero: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.every or self.above_zero)

    def of(self, value: float) -> frozenset[str]:
        """The detectors that read a sample of this value."""
        return self.every | self.above_zero if value > 0 else self.every


@lru_cache(maxsize=65536)
def series_readers(name: str) -> SeriesReaders:
    """Who reads ``metric`` samples named ``name``. A sample nobody reads (at its value) never becomes
    evidence. Names are few (an exporter serves a few hundred series names), so the answers are cached.
    """
    every: set[str] = set()
    above_zero: set[str] = set()
    for detector, series, positive in _SERIES:
        if series is not None and series.match(name):
            (above_zero if positive is not None and positive.match(name) else every).add(detector)
    return SeriesReaders(frozenset(every), frozenset(above_zero))


def check(e: Evidence, parser: str) -> None:
    """Check one piece of evidence against its kind's entry.

    Args:
        e: The evidence.
        parser: ``name`` of the parser that made it.

    Raises:
        EvidenceError: an unknown kind, a parser not in ``made_by``, an undeclared attribute, a missing
            required one or a value of the wrong type, a layer or severity outside the vocabulary.
    """
    kind = BY_NAME.get(e.kind)
    if kind is None:
        raise EvidenceError(f"unknown evidence kind {e.kind!r}")
    if parser not in kind.made_by:
        raise EvidenceError(f"parser {parser!r} may not make {e.kind!r}")
    if e.severity not in SEVERITIES:
        raise EvidenceError(f"{e.kind}: severity {e.severity!r}")
    if e.layer is not None and e.layer not in LAYERS:
        raise EvidenceError(f"{e.kind}: layer {e.layer!r}")
    if kind.layer is not None and e.layer not in (None, kind.layer):
        raise EvidenceError(f"{e.kind}: layer {e.layer!r}, declared {kind.layer!r}")
    for name, value in e.attrs.items():
        declared = kind.attrs.get(name) or COMMON_ATTRS.get(name)
        if declared is None:
            raise EvidenceError(f"{e.kind}: undeclared attribute {name!r}")
        if not _is(value, declared):
            raise EvidenceError(f"{e.kind}: {name}={value!r} is not {declared}")
    for name, declared in kind.attrs.items():
        if name not in e.attrs and not _is(None, declared):
            raise EvidenceError(f"{e.kind}: attribute {name!r} missing")
    if kind.layer is not None and e.layer is None:
        e.layer = kind.layer


def _is(value: Any, declared: AttrType) -> bool:
    if isinstance(value, bool) and not _is_bool_type(declared):
        return False  # a bool is an int to isinstance, never to a reader
    if isinstance(value, int) and not isinstance(value, bool) and _admits(declared, float):
        return True  # an int where a float is declared: Prometheus parses "12" as 12.0, "12" may stay int
    return isinstance(value, declared)


def _admits(declared: AttrType, cls: type) -> bool:
    members = declared.__args__ if isinstance(declared, types.UnionType) else (declared,)
    return cls in members


def _is_bool_type(declared: AttrType) -> bool:
    return _admits(declared, bool)
