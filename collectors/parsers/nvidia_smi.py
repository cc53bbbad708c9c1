"""``nvidia-smi`` output: ``-q`` reports, ``-L`` lists, ``nvlink -s`` status and the default table.

``-q`` is an indented ``key : value`` tree with one ``GPU dddddddd:bb:dd.f`` section per GPU, in index
order; a section's position is its index only when the report lists every attached GPU (``-i`` may
select one). The fields read are those NVML reports through ``nvmlDeviceGetCurrentClocksEventReasons``
(clock event reasons), ``nvmlDeviceGetMemoryErrorCounter`` (ECC), ``nvmlDeviceGetRemappedRows`` (row
remapping), ``nvmlDeviceGetRetiredPages`` and ``nvmlDeviceGetTemperature``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from collectors import knowledge
from collectors.evidence import Evidence, canonical_bus_id
from collectors.parsers.base import DocumentParser, FileContext, Line, LineParser

_GPU_SECTION = re.compile(r"^GPU (?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")
_KEY_VALUE = re.compile(r"^(?P<indent>\s*)(?P<key>[^:]+?)\s*:\s*(?P<value>.*?)\s*$")
_ATTACHED = re.compile(r"^Attached GPUs\s*:\s*(\d+)", re.MULTILINE)
#: Sections whose values are read (path prefix as printed, lower case).
_WATCHED = (
    "clocks throttle reasons",
    "clocks event reasons",
    "ecc errors",
    "remapped rows",
    "retired pages",
    "temperature",
    "clocks_event_reasons",
)

_LIST = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>GPU-[0-9a-fA-F-]+)\)")
#: ``nvidia-smi nvlink -e``: one error counter of one link (``nvmlDeviceGetNvLinkErrorCounter``).
_LINK_ERRORS = re.compile(r"^\s*Link (?P<link>\d+): (?P<counter>[A-Za-z ]*Errors): (?P<value>\d+)\s*$")
_LINK = re.compile(r"^\s*Link (?P<link>\d+): (?P<state><inactive>|[\d.]+ ?[GM]B/s|.*)$")
_ALL_INACTIVE = re.compile(r"Unable to retrieve NVLink information as all links are inactive", re.IGNORECASE)
#: The signature (``signatures.yaml``) of a GPU whose table rows read ERR!.
TABLE_ERR_SIGNATURE = "nvidia_smi_table_err"
_TABLE_ROW = re.compile(
    r"^\|\s+(?P<index>\d+)\s+(?P<name>.+?)\s+(?:On|Off)\s+\|\s+(?P<bus>[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)"
)


class NvidiaSmiQueryParser(DocumentParser):
    """``nvidia-smi -q`` reports (one or more GPUs)."""

    name = "nvidia-smi -q"

    @classmethod
    def sniff(cls, head: str) -> bool:
        if "==============NVSMI LOG==============" in head:
            return True
        return bool(_ATTACHED.search(head)) and any(_GPU_SECTION.match(ln) for ln in head.splitlines()[:200])

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        attached: int | None = None
        sections: list[tuple[Line, str]] = []
        fields: list[tuple[int, Line, str, str]] = []  # (section index, line, path, value)
        stack: list[tuple[int, str]] = []
        for line in lines:
            text = line.text.rstrip()
            m = _GPU_SECTION.match(text)
            if m:
                sections.append((line, canonical_bus_id(m["bus"]) or m["bus"]))
                stack = []
                continue
            kv = _KEY_VALUE.match(text)
            if kv is None:
                if not text.strip() or text.lstrip().startswith("="):
                    continue
                # A line without " : " opens a section ("    Clocks Event Reasons").
                indent, key, value = len(text) - len(text.lstrip()), text.strip(), ""
            else:
                indent, key, value = len(kv["indent"]), kv["key"].strip(), kv["value"]
            if key == "Attached GPUs" and value.isdigit():
                attached = int(value)
                continue
            while stack and stack[-1][0] >= indent:
                stack.pop()
            if not value:
                stack.append((indent, key))
                continue
            if not sections:
                continue
            path = " / ".join([s for _, s in stack] + [key])
            if path.lower().startswith(_WATCHED) or key in ("GPU UUID", "Minor Number", "Product Name"):
                fields.append((len(sections) - 1, line, path, value))
        complete = attached is not None and attached == len(sections)
        uuids = {i: v for i, _, p, v in fields if p == "GPU UUID"}
        for i, (line, bus) in enumerate(sections):
            yield self.ctx.evidence(
                line,
                "gpu_identity",
                gpu=i if complete else None,
                gpu_pci_bus_id=bus,
                attrs={"uuid": uuids.get(i)},
            )
        for i, line, path, value in fields:
            if path in ("GPU UUID", "Minor Number", "Product Name"):
                continue
            e = self.ctx.evidence(
                line,
                "smi_field",
                gpu=i if complete else None,
                gpu_pci_bus_id=sections[i][1],
                attrs={"path": path, "value": value},
            )
            # The line alone ("Pending : Yes") says nothing without its section and GPU.
            e.text = f"GPU {sections[i][1]}: {path}: {value}"
            yield e


class NvidiaSmiLinesParser(LineParser):
    """``nvidia-smi -L``, ``nvidia-smi nvlink -s`` / ``-e`` and the default table's GPU rows.

    The table gives each GPU two or three rows; only the first names the GPU. Where NVML cannot read a
    GPU, ``ERR!`` may stand only on a later row (the first row's ECC column is ``N/A`` on GPUs without
    ECC), so such a row is read as the ``nvidia_smi_table_err`` signature of the GPU above it.
    """

    name = "nvidia-smi"
    keywords = (
        "(UUID: GPU-",
        "Link ",
        "NVLink information",
        "Nvlink information",
        ".0 Off |",
        ".0  On |",
        "ERR!",
    )

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._gpu: int | None = None
        self._row: tuple[int, str | None] | None = None

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        m = _LIST.match(body)
        if m:
            self._gpu = int(m["index"])
            return (
                self.ctx.evidence(
                    line, "gpu_identity", gpu=self._gpu, attrs={"uuid": m["uuid"], "model": m["name"]}
                ),
            )
        m = _LINK_ERRORS.match(body)
        if m:
            if self._gpu is None:
                return ()
            return (
                self.ctx.evidence(
                    line,
                    "nvlink_error_counter",
                    gpu=self._gpu,
                    layer="nvlink",
                    attrs={"link": int(m["link"]), "counter": m["counter"], "value": int(m["value"])},
                ),
            )
        m = _LINK.match(body)
        if m and self._gpu is not None:
            state = m["state"].strip()
            up = state != "<inactive>" and "B/s" in state
            return (
                self.ctx.evidence(
                    line,
                    "nvlink_state",
                    gpu=self._gpu,
                    severity="info" if up else "warning",
                    layer="nvlink",
                    attrs={"link": int(m["link"]), "state": state, "up": up},
                ),
            )
        if _ALL_INACTIVE.search(body):
            return (
                self.ctx.evidence(
                    line, "nvlink_all_inactive", gpu=self._gpu, severity="error", layer="nvlink"
                ),
            )
        m = _TABLE_ROW.match(body)
        if m is None and self._row is not None and body.startswith("|") and "ERR!" in body:
            gpu, bus = self._row
            self._row = None  # one finding per GPU block
            sig = next(s for s in knowledge.signatures() if s.id == TABLE_ERR_SIGNATURE)
            return (
                self.ctx.evidence(
                    line,
                    "signature",
                    severity=sig.severity,
                    layer=sig.layer,
                    gpu=gpu,
                    gpu_pci_bus_id=bus,
                    attrs={"signature": TABLE_ERR_SIGNATURE, "groups": {"gpu": str(gpu), "bus": bus or "?"}},
                ),
            )
        if m:
            # A first row that already shows ERR! is the signature parser's; later rows are ours.
            self._row = None if "ERR!" in body else (int(m["index"]), canonical_bus_id(m["bus"]))
            return (
                self.ctx.evidence(
                    line,
                    "gpu_identity",
                    gpu=int(m["index"]),
                    gpu_pci_bus_id=canonical_bus_id(m["bus"]),
                    attrs={"model": m["name"]},
                ),
            )
        return ()
