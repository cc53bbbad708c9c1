"""Kernel log: NVIDIA driver (NVRM) messages and Xids, PCIe AER, lockups, module load errors.

Reads ``dmesg`` (uptime, ``-T`` and ``-H`` stamps), ``journalctl -k``/syslog (``... kernel: ``) and tools
that quote kernel lines (gpud's ``[XID found] (54 minutes ago) "NVRM: Xid ..."``). The driver splits some
messages over several lines, continuation lines carrying no timestamp::

    [ 1843.308145] NVRM: The NVIDIA GPU 0000:b3:00.0
                   NVRM: (PCI ID: 10de:26b5) installed in this system has
                   NVRM: fallen off the bus and is not responding to commands.

so NVRM lines are joined until the next stamped one. Xid and GPU-naming messages are read with
:mod:`fleetscope.formats.nvrm`'s grammar, the one the exporter's Xid watcher uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import FileContext, Line, LineParser
from fleetscope.formats import FALLEN_OFF_BUS, GPU_NAMED, canonical_bus_id, parse_xid

_CAUSED_BY = re.compile(r"caused by previous Xid (\d+)", re.IGNORECASE)
_DRIVER_GPU = re.compile(r"\bGPU(\d+)\b")
_GPU_AT = re.compile(r"NVRM: GPU at PCI:(?P<bus>[0-9a-fA-F:.]+): (?P<uuid>GPU-[0-9a-fA-F-]+)")
_API_MISMATCH = re.compile(r"NVRM: API mismatch: .*?version (?P<client>[\d.]+).*?version (?P<kernel>[\d.]+)")
_RM_INIT = re.compile(r"NVRM: (?:GPU (?P<bus>[0-9a-fA-F:.]+): )?RmInitAdapter failed!?(?P<msg>.*)")
_PROBE_FAILED = re.compile(r"NVRM: The NVIDIA probe routine (?:failed|was not called) for (\d+) device")
_AER = re.compile(
    r"(?P<drv>[\w-]+) (?P<bus>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]): (?P<msg>.*)"
)
_AER_BIT = re.compile(r"^\s*\[\s*\d+\]\s+(?P<bit>[A-Za-z]\w*)")
_LOCKUP = re.compile(
    r"(?P<what>soft lockup|hard LOCKUP|rcu_sched self-detected stall|blocked for more than \d+ seconds)"
    r".*?(?:\[(?P<proc>[^\]:]+):\d+\])?"
)
_UNKNOWN_SYMBOL = re.compile(
    r"(?P<mod>nvidia[\w-]*): (?P<msg>Unknown symbol .*|disagrees about version of symbol .*)"
)
_CONTINUATION_INDENT = (" ", "\t")
# journald, syslog and kmsg give every continuation line its own prefix: it reads as an NVRM line whose
# text goes on the previous one's sentence (lower-case word or "(PCI ID"), never "NVRM: name: ..." or a
# capitalised new message.
_SENTENCE_GOES_ON = re.compile(r"NVRM: (?:\(|[a-z]+(?:[ ,.]|$))")


class KernelLogParser(LineParser):
    """NVRM/Xid, PCIe AER, lockup and module-load messages of the Linux kernel log."""

    name = "kernel"
    keywords = (
        "NVRM",
        "AER",
        "PCIe Bus Error",
        "pcieport",  # AER's error-bit lines ("[14] CmpltTO") carry no "AER"
        "error status/mask",
        "soft lockup",
        "hard LOCKUP",
        "self-detected stall",
        "blocked for more than",
        "Unknown symbol",
        "disagrees about version",
    )

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._pending: list[Line] = []

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        out: list[Evidence] = []
        if "NVRM" in body:
            continuation = line.pre.stamp is None and line.text.startswith(_CONTINUATION_INDENT)
            if not continuation and self._pending:
                last = self._pending[-1].pre.body.rstrip()
                goes_on = _SENTENCE_GOES_ON.match(_nvrm_text(body)) is not None
                continuation = goes_on and not last.endswith(".")
            if continuation and self._pending:
                self._pending.append(line)
                return out
            out.extend(self._flush())
            self._pending = [line]
            return out
        out.extend(self._flush())
        if "AER" in body or "PCIe Bus Error" in body or "pcieport" in body:
            out.extend(self._aer(line))
        m = _LOCKUP.search(body)
        if m:
            out.append(
                self.ctx.evidence(
                    line,
                    "kernel_lockup",
                    severity="error",
                    layer="host_software",
                    attrs={"what": m["what"], "process": m["proc"]},
                )
            )
        m = _UNKNOWN_SYMBOL.search(body)
        if m:
            out.append(
                self.ctx.evidence(
                    line,
                    "module_load_error",
                    severity="error",
                    layer="host_software",
                    attrs={"module": m["mod"], "message": m["msg"]},
                )
            )
        return out

    def finish(self) -> Iterable[Evidence]:
        return list(self._flush())

    def _flush(self) -> Iterator[Evidence]:
        if not self._pending:
            return
        first = self._pending[0]
        rest = [_nvrm_text(ln.pre.body).removeprefix("NVRM:").strip() for ln in self._pending[1:]]
        parts = [first.pre.body, *rest]
        self._pending = []
        message = " ".join(p for p in parts if p).strip().rstrip('"')
        yield from self._nvrm(first, message)

    def _nvrm(self, line: Line, message: str) -> Iterator[Evidence]:
        ev = self.ctx.evidence
        xid = parse_xid(message)
        if xid is not None:
            detail = xid.detail
            attrs: dict[str, object] = {
                "xid": xid.xid,
                "pid": xid.pid,
                "process": xid.process,
                "detail": detail,
            }
            caused = _CAUSED_BY.search(detail)
            if caused:
                attrs["caused_by_xid"] = int(caused.group(1))
            gpu_n = _DRIVER_GPU.search(detail)
            if gpu_n:
                attrs["driver_gpu"] = int(gpu_n.group(1))
            e = ev(line, "xid", gpu_pci_bus_id=xid.bus_id, severity="error", attrs=attrs)
            e.text = _text(line, message)
            yield e
            return
        m = GPU_NAMED.search(message)
        if m and FALLEN_OFF_BUS.search(message, m.end()):
            e = ev(
                line,
                "gpu_fallen_off_bus",
                gpu_pci_bus_id=canonical_bus_id(m["pci"]),
                severity="critical",
                layer="gpu_hardware",
            )
            e.text = _text(line, message)
            yield e
            return
        m = _GPU_AT.search(message)
        if m:
            yield ev(
                line, "gpu_identity", gpu_pci_bus_id=canonical_bus_id(m["bus"]), attrs={"uuid": m["uuid"]}
            )
            return
        m = _API_MISMATCH.search(message)
        if m:
            yield ev(
                line,
                "driver_api_mismatch",
                severity="error",
                layer="host_software",
                attrs={"client_version": m["client"], "kernel_version": m["kernel"]},
            )
            return
        m = _RM_INIT.search(message)
        if m:
            yield ev(
                line,
                "rm_init_failed",
                severity="error",
                layer="gpu_hardware",
                gpu_pci_bus_id=canonical_bus_id(m["bus"]) if m["bus"] else None,
                attrs={"detail": m["msg"].strip()},
            )
            return
        m = _PROBE_FAILED.search(message)
        if m:
            yield ev(
                line,
                "driver_probe_failed",
                severity="error",
                layer="host_software",
                attrs={"devices": int(m.group(1))},
            )

    def _aer(self, line: Line) -> Iterator[Evidence]:
        body = line.pre.body.removeprefix("kernel: ")
        m = _AER.search(body)
        bit = _AER_BIT.match(m["msg"]) if m else None
        if m is None or (bit is None and "AER" not in m["msg"] and "PCIe Bus Error" not in m["msg"]):
            return
        msg = m["msg"]
        low = msg.lower()
        if "fatal" in low and "non-fatal" not in low:
            severity = "critical"
        elif "uncorrected" in low or "non-fatal" in low or "can't recover" in low or "recovery failed" in low:
            severity = "error"
        elif "corrected" in low:
            severity = "warning"
        else:
            severity = "info"
        if bit:
            severity = "info"
        attrs = {"driver": m["drv"], "device": canonical_bus_id(m["bus"]), "message": msg.strip()}
        if bit:
            attrs["error_bit"] = bit["bit"]
        is_gpu = m["drv"] == "nvidia"
        yield self.ctx.evidence(
            line,
            "pcie_aer",
            severity=severity,
            layer="gpu_hardware",
            gpu_pci_bus_id=canonical_bus_id(m["bus"]) if is_gpu else None,
            attrs=attrs,
        )


def _nvrm_text(body: str) -> str:
    return body.strip().removeprefix("kernel:").strip()


def _text(line: Line, message: str) -> str:
    stamp = line.pre.stamp.raw + " " if line.pre.stamp else ""
    return (stamp + message)[:1000]
