"""``nvidia-smi`` output: ``-q`` reports, ``-L`` lists, ``nvlink -s`` status, the default table and
``--query-gpu=... --format=csv`` output.

``-q`` is an indented ``key : value`` tree with one ``GPU dddddddd:bb:dd.f`` section per GPU, in index
order; a section's position is its index only when the report lists every attached GPU (``-i`` may
select one). The fields read are those NVML reports through ``nvmlDeviceGetCurrentClocksEventReasons``
(clock event reasons), ``nvmlDeviceGetMemoryErrorCounter`` (ECC), ``nvmlDeviceGetRemappedRows`` (row
remapping), ``nvmlDeviceGetRetiredPages`` and ``nvmlDeviceGetTemperature``. A piece of ``-q`` whose
``GPU dddddddd:bb:dd.f`` header line was cut off still states its clock-event reasons; they are read as
evidence of an unnamed GPU of the node.

``--query-gpu`` CSV (``nvidia-smi --help-query-gpu`` names the fields) is a bus id <-> index map and
states the same NVML facts as ``-q`` under dotted names; those are read as the ``-q`` field they match
(:data:`_QUERY_PATHS`), so one detector reads both. Without its header (``csv,noheader``) only the
shapes say what a column is: the bus id, a ``GPU-...`` UUID, and the index when it is the first column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from fleetscope.collectors import knowledge
from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import DocumentParser, FileContext, Line, LineParser
from fleetscope.formats import canonical_bus_id

_BUS_ID = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
_UUID = re.compile(r"^GPU-[0-9a-fA-F-]{8,}$")
#: A ``--query-gpu`` field name as the CSV header prints it: ``temperature.gpu``, ``memory.used [MiB]``.
_QUERY_FIELD = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*(?: \[[^\]]+\])?$")
#: ``--query-gpu`` name prefixes and the ``-q`` section they state (``nvidia-smi --help-query-gpu``).
_QUERY_PATHS = (
    ("clocks_event_reasons.", "Clocks Event Reasons"),
    ("clocks_throttle_reasons.", "Clocks Event Reasons"),
    ("ecc.errors.", "ECC Errors"),
    ("retired_pages.", "Retired Pages"),
    ("temperature.", "Temperature"),
)
#: ``--query-gpu`` names whose ``-q`` wording differs from a title-cased name.
_QUERY_KEYS = {
    "hw_slowdown": "HW Slowdown",
    "hw_thermal_slowdown": "HW Thermal Slowdown",
    "sw_thermal_slowdown": "SW Thermal Slowdown",
    "hw_power_brake_slowdown": "HW Power Brake Slowdown",
    "sw_power_cap": "SW Power Cap",
    "gpu": "GPU Current Temp",
    "memory": "Memory Current Temp",
    "pending": "Pending",
}
#: Values nvidia-smi prints where a field has no reading.
_NO_READING = ("[N/A]", "N/A", "[Not Supported]", "[Unknown Error]", "")
#: A ``-q`` clock-event reason line that means a thermal or power fault, whatever section header preceded it.
_FAULT_REASON_LINE = re.compile(
    r"^\s+(?P<key>HW Slowdown|HW Thermal Slowdown|SW Thermal Slowdown|HW Power Brake Slowdown)\s*:\s*"
    r"(?P<value>Active|Not Active)\s*$"
)

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
    "gpu recovery action",
)

_LIST = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>GPU-[0-9a-fA-F-]+)\)")
#: ``nvidia-smi nvlink -e``: one error counter of one link (``nvmlDeviceGetNvLinkErrorCounter``).
_LINK_ERRORS = re.compile(r"^\s*Link (?P<link>\d+): (?P<counter>[A-Za-z ]*Errors): (?P<value>\d+)\s*$")
_LINK = re.compile(r"^\s*Link (?P<link>\d+): (?P<state><inactive>|[\d.]+ ?[GM]B/s|.*)$")
_ALL_INACTIVE = re.compile(r"Unable to retrieve NVLink information as all links are inactive", re.IGNORECASE)
#: The signature (``signatures.yaml``) of a GPU whose table rows read ERR!.
TABLE_ERR_SIGNATURE = "nvidia_smi_table_err"
#: The signature of an ERR! row whose GPU row (index, bus id) was cut off.
TABLE_ERR_UNPLACED_SIGNATURE = "nvidia_smi_table_err_unplaced"
_ROW_BUS = re.compile(r"[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d")
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

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        # Kept on the instance, so a reader that restarts parse() after an odd line keeps what came before.
        self._attached: int | None = None
        self._sections: list[tuple[Line, str]] = []
        self._fields: list[tuple[int, Line, str, str]] = []  # (section index, line, path, value)
        self._stack: list[tuple[int, str]] = []

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        sections, fields, stack = self._sections, self._fields, self._stack
        for line in lines:
            text = line.text.rstrip()
            m = _GPU_SECTION.match(text)
            if m:
                sections.append((line, canonical_bus_id(m["bus"]) or m["bus"]))
                stack.clear()
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
                self._attached = int(value)
                continue
            while stack and stack[-1][0] >= indent:
                stack.pop()
            if not value:
                stack.append((indent, key))
                continue
            path = " / ".join([s for _, s in stack] + [key])
            if path.lower().startswith(_WATCHED) or key in ("GPU UUID", "Minor Number", "Product Name"):
                fields.append((len(sections) - 1, line, path, value))
        complete = self._attached is not None and self._attached == len(sections)
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
            # Fields before any GPU header (the header line was cut off) belong to a GPU nobody named.
            owner = sections[i][1] if i >= 0 else None
            e = self.ctx.evidence(
                line,
                "smi_field",
                gpu=i if complete and i >= 0 else None,
                gpu_pci_bus_id=owner,
                attrs={"path": path, "value": value},
            )
            # The line alone ("Pending : Yes") says nothing without its section and GPU.
            e.text = f"GPU {owner or '(header line missing)'}: {path}: {value}"
            yield e


def _query_path(field: str) -> str:
    """The ``-q`` path a ``--query-gpu`` field states (``ecc.errors.uncorrected.volatile.total`` ->
    ``ECC Errors / Volatile / Total Uncorrectable``), or the field itself where none matches."""
    name = field.split(" [", 1)[0]
    for prefix, section in _QUERY_PATHS:
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].split(".")
        if section == "ECC Errors" and len(parts) == 3:
            kind, scope, where = parts
            what = "Uncorrectable" if kind == "uncorrected" else "Correctable"
            return f"{section} / {scope.title()} / {where.replace('_', ' ').title()} {what}"
        key = _QUERY_KEYS.get(parts[-1], parts[-1].replace("_", " ").title())
        return f"{section} / {key}"
    return name


class NvidiaSmiCsvParser(DocumentParser):
    """``nvidia-smi --query-gpu=... --format=csv[,noheader[,nounits]]`` output."""

    name = "nvidia-smi --query-gpu"

    @classmethod
    def sniff(cls, head: str) -> bool:
        rows = [ln for ln in head.splitlines()[:20] if ln.strip()]
        if not rows:
            return False
        header = [c.strip() for c in rows[0].split(",")]
        if len(header) >= 2 and all(_QUERY_FIELD.match(c) for c in header):
            return "pci.bus_id" in header or ("index" in header and any("." in c for c in header))
        cells = [[c.strip() for c in r.split(",")] for r in rows]
        return all(len(c) >= 2 and any(_BUS_ID.match(x) for x in c) for c in cells)

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._header: list[str] | None = None  # on the instance: it survives a restart after an odd row

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        for line in lines:
            cells = [c.strip() for c in line.text.rstrip("\r\n").split(",")]
            if len(cells) < 2:
                continue
            if self._header is None and all(_QUERY_FIELD.match(c) for c in cells):
                self._header = [c.split(" [", 1)[0] for c in cells]
                continue
            yield from self._row(line, cells, self._header)

    def _row(self, line: Line, cells: list[str], header: list[str] | None) -> Iterator[Evidence]:
        if header is not None:
            row = dict(zip(header, cells, strict=False))
        else:
            # Without a header only shapes tell the columns apart; ``index`` is the query's usual first.
            row = {}
            for i, cell in enumerate(cells):
                if _BUS_ID.match(cell):
                    row["pci.bus_id"] = cell
                elif _UUID.match(cell):
                    row["uuid"] = cell
                elif i == 0 and cell.isdigit():
                    row["index"] = cell
        index = row.get("index", "")
        gpu = int(index) if index.isdigit() else None
        raw_bus = row.get("pci.bus_id", "")
        bus = canonical_bus_id(raw_bus) if _BUS_ID.match(raw_bus) else None
        if gpu is None and bus is None:
            return
        yield self.ctx.evidence(
            line,
            "gpu_identity",
            gpu=gpu,
            gpu_pci_bus_id=bus,
            attrs={"uuid": row.get("uuid"), "model": row.get("name")},
        )
        for field, value in row.items():
            if field in ("index", "pci.bus_id", "uuid", "name") or value in _NO_READING:
                continue
            path = _query_path(field)
            e = self.ctx.evidence(
                line, "smi_field", gpu=gpu, gpu_pci_bus_id=bus, attrs={"path": path, "value": value}
            )
            e.text = f"GPU {gpu if gpu is not None else bus}: {field} = {value} ({line.text.strip()[:200]})"
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
        "GPU 0000",
        "HW Slowdown",
        "Thermal Slowdown",
        "Power Brake Slowdown",
    )

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._gpu: int | None = None
        self._row: tuple[int, str | None] | None = None
        self._table_seen = False
        self._section_bus: str | None = None

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body
        m = _GPU_SECTION.match(body.strip())
        if m:
            # A ``-q`` piece in a log: its fields belong to this GPU until the next header.
            self._section_bus = canonical_bus_id(m["bus"])
            return ()
        m = _FAULT_REASON_LINE.match(body)
        if m:
            e = self.ctx.evidence(
                line,
                "smi_field",
                gpu_pci_bus_id=self._section_bus,
                attrs={"path": f"Clocks Event Reasons / {m['key']}", "value": m["value"]},
            )
            e.text = f"GPU {self._section_bus or '(header line missing)'}: {line.text.strip()}"
            return (e,)
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
        if (
            m is None
            and not self._table_seen
            and body.startswith("|")
            and "ERR!" in body
            and not _ROW_BUS.search(body)
        ):
            # The GPU's first row (index, bus id) was cut off: NVML still failed on one of the node's GPUs.
            self._table_seen = True
            return (
                self.ctx.evidence(
                    line,
                    "signature",
                    severity="critical",
                    layer="gpu_hardware",
                    attrs={"signature": TABLE_ERR_UNPLACED_SIGNATURE, "groups": {}},
                ),
            )
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
            self._table_seen = True
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
