"""NCCL's own log lines (``NCCL_DEBUG=WARN|INFO``) and the transport errors they quote.

Line shape (src/include/debug.h): ``host:pid:tid [cudaDev] [func:line ]NCCL WARN|INFO message``, after
any launcher prefix. Transport errors are also quoted inside PyTorch's exceptions (``Last error: NET/IB :
Got completion from peer 10.0.0.2<39138> with error 12 ...``), so those patterns are searched anywhere in
a line. ``busId`` INFO lines map a device to its PCI bus id (``cudaDev 3 nvmlDev 3 busId 5d000``) and,
where they say ``rank N nranks M``, a rank to that GPU; the ``Init COMPLETE`` one says the process's
communicator came up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import Line, LineParser
from fleetscope.formats import canonical_bus_id

_HEADER = re.compile(
    r"(?P<host>[\w.-]+):(?P<pid>\d+):(?P<tid>\d+) \[(?P<dev>\d+)\] (?:(?P<func>[\w:./-]+):(?P<lineno>\d+) )?"
    r"NCCL (?P<level>WARN|INFO|ERROR|TRACE|ABORT) (?P<msg>.*)"
)
_BARE = re.compile(r"NCCL (?P<level>WARN|ERROR) (?P<msg>.*)")
_IB_COMPLETION = re.compile(
    r"NET/IB\w* ?: ?Got completion (?:from peer (?P<peer>\S+?) )?"
    r"with (?:error |status=(?:IBV_WC_\w+\()?)(?P<code>\d+)"
    r"(?:,? opcode[ =](?P<opcode>\d+))?(?:.*?vendor err (?P<vendor>\d+))?"
)
_OFI_COMPLETION = re.compile(
    r"NET/OFI .*?completed with error\. RC: (?P<rc>-?\d+)\.(?: Flags: \d+\.)? "
    r"Error: (?:(?P<prov>\d+) )?(?P<error>[^.]*)"
)
_OFI_CALL = re.compile(
    r"NET/OFI .*?(?:(?P<call>fi_\w+)\(\)? call failed: (?P<error>.*)"
    r"|(?P<init>Unable to find a protocol that worked|No eligible providers were found).*)"
)
#: ``RC: -22, Error: Invalid argument`` (aws-ofi-nccl's ``NCCL_OFI_WARN`` lines quote ``fi_strerror``).
_OFI_RC = re.compile(r"\bRC: ?(?P<rc>-?\d+)(?:[.,]? ?(?:Error|ERROR): ?(?P<error>[^.,]+))?")
_BUS = re.compile(r"cudaDev (?P<cuda>\d+)(?: nvmlDev (?P<nvml>\d+))? busId (?P<bus>[0-9a-fA-F:.]+)")
_RANK = re.compile(r"\brank (?P<rank>\d+) nRanks (?P<nranks>\d+)", re.IGNORECASE)


class NcclParser(LineParser):
    """NCCL WARN lines, IB/OFI transport errors and device-to-bus-id INFO lines."""

    name = "nccl"
    # Not "NET/IB" alone: INFO lines name the transport at every init and would all become candidates.
    keywords = (
        "NCCL WARN",
        "NCCL ERROR",
        "Got completion",
        "completed with error",
        "call failed",
        "Unable to find a protocol",
        "No eligible providers",
        "busId",
    )

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        head = _HEADER.search(body)
        host = head["host"] if head else None
        fields: dict[str, Any] = {"node": self.ctx.node or host or line.pre.host}
        out: list[Evidence] = []
        m = _BUS.search(body)
        if m:
            index = int(m["nvml"] if m["nvml"] is not None else m["cuda"])
            attrs: dict[str, Any] = {"source_field": "nvmlDev" if m["nvml"] is not None else "cudaDev"}
            r = _RANK.search(body)
            if r:
                attrs["rank"] = int(r["rank"])
                attrs["nranks"] = int(r["nranks"])
            if "Init COMPLETE" in body:
                attrs["init_complete"] = True
                if head:
                    attrs["pid"] = head["pid"]
            out.append(
                self.ctx.evidence(
                    line,
                    "gpu_identity",
                    gpu=index,
                    gpu_pci_bus_id=canonical_bus_id(m["bus"]),
                    attrs=attrs,
                    **fields,
                )
            )
        m = _IB_COMPLETION.search(body)
        if m:
            out.append(
                self.ctx.evidence(
                    line,
                    "ib_completion_error",
                    severity="error",
                    layer="network",
                    attrs={
                        "status": int(m["code"]),
                        "peer": m["peer"],
                        "opcode": m["opcode"],
                        "vendor_err": m["vendor"],
                    },
                    **fields,
                )
            )
            return out
        m = _OFI_COMPLETION.search(body)
        if m:
            out.append(
                self.ctx.evidence(
                    line,
                    "ofi_completion_error",
                    severity="error",
                    layer="network",
                    attrs={
                        "rc": abs(int(m["rc"])),
                        "prov_errno": int(m["prov"]) if m["prov"] else None,
                        "error": m["error"],
                    },
                    **fields,
                )
            )
            return out
        m = _OFI_CALL.search(body)
        if m:
            out.append(
                self.ctx.evidence(
                    line,
                    "ofi_call_failed",
                    severity="error",
                    layer="network",
                    attrs={"call": m["call"] or "plugin init", "error": (m["error"] or m["init"]).strip()},
                    **fields,
                )
            )
            return out
        level_msg = head or _BARE.search(body)
        if level_msg and level_msg["level"] in ("WARN", "ERROR", "ABORT"):
            warn: dict[str, Any] = {"message": level_msg["msg"].strip()}
            if head:
                warn["device"] = int(head["dev"])
                warn["pid"] = head["pid"]
                if head["func"]:
                    warn["where"] = head["func"]  # NCCL's source file or function ("transport/nvls.cc")
            if warn["message"].startswith("NET/OFI"):
                # The aws-ofi-nccl plugin's own failure (memory registration, endpoint, address vector):
                # the EFA software stack, with the libfabric return code it quotes.
                rc = _OFI_RC.search(warn["message"])
                warn["rc"] = abs(int(rc["rc"])) if rc else None
                warn["error"] = rc["error"].strip() if rc and rc["error"] else ""
                out.append(
                    self.ctx.evidence(
                        line, "ofi_warn", severity="error", layer="network", attrs=warn, **fields
                    )
                )
                return out
            out.append(self.ctx.evidence(line, "nccl_warn", severity="warning", attrs=warn, **fields))
        return out
