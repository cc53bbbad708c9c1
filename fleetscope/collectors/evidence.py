"""The evidence model shared by every parser, detector and the correlator.

An :class:`Evidence` is one fact read from one line (or one sample) of one source; a :class:`Finding` is
what a detector concluded from one or more pieces of evidence. Both carry the layer vocabulary of
docs/design.md so the correlator can reason across sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

#: Root-cause layers, in docs/design.md's order ("Layers (the vocabulary of a root cause)").
LAYERS: tuple[str, ...] = (
    "gpu_hardware",
    "gpu_memory",
    "nvlink",
    "thermal_power",
    "network",
    "host_software",
    "framework",
    "storage",
    "data_pipeline",
    "job",
)

#: Severities, most severe first.
SEVERITIES: tuple[str, ...] = ("critical", "error", "warning", "info")

Role = Literal["cause", "symptom", "context"]
#: How sure an answer is, most sure first: the evidence states the fault; it points at it; it does not
#: establish it.
Certainty = Literal["established", "likely", "unsure"]
CERTAINTIES: tuple[Certainty, ...] = ("established", "likely", "unsure")
#: Which symptoms a cause can explain: those of its GPU, of its node, or of the whole job.
Scope = Literal["gpu", "node", "cluster"]

#: Evidence attribute set where the GPU index is the NVIDIA driver's own instance number ("GPU3" in an
#: NVRM line), used because no file of the node maps the bus id to an nvidia-smi index.
DRIVER_NUMBERING = "gpu_from_driver_numbering"


@dataclass(slots=True)
class Evidence:
    """One fact read from a bundle.

    Attributes:
        kind: What the line says, e.g. ``"xid"``, ``"nccl_warn"``, ``"metric"``, ``"gpu_identity"``.
        text: The line (or sample) as read, stripped of its trailing newline, at most 1,000 characters.
        source: ``"node-01/dmesg.log:3"``: the file relative to the bundle and the 1-based line number.
        node: Node name (the bundle's sub-folder, or a host named in the line), or ``None``.
        time: Parsed UTC time, or ``None`` where the line has none or only an uptime.
        time_raw: The timestamp exactly as written, or ``None``.
        gpu: GPU index in ``nvidia-smi`` order where the source states it, else ``None``.
        gpu_pci_bus_id: Canonical PCI bus id ``"0000:3b:00.0"`` where the source states it, else ``None``.
        layer: One of :data:`LAYERS` where the parser can tell, else ``None``.
        severity: One of :data:`SEVERITIES`.
        attrs: Parser-specific fields (Xid number, metric labels and value, watchdog fields ...).
    """

    kind: str
    text: str
    source: str
    node: str | None = None
    time: datetime | None = None
    time_raw: str | None = None
    gpu: int | None = None
    gpu_pci_bus_id: str | None = None
    layer: str | None = None
    severity: str = "info"
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Finding:
    """A detector's conclusion: a candidate cause, or a symptom that needs one.

    Attributes:
        kind: Stable identifier of what was found, e.g. ``"xid:79"``, ``"ib_wc_status:12"``.
        layer: One of :data:`LAYERS`, or ``None`` where the detector cannot tell (an unexplained slowdown).
        role: ``"cause"`` (explains other findings), ``"symptom"`` (needs a cause), ``"context"``.
        severity: One of :data:`SEVERITIES`.
        weight: Prior strength of this finding as a root cause, 0-1 (hardware facts high, bare symptoms
            low); the correlator adjusts it with corroboration.
        summary: One sentence for the on-call engineer.
        action: What to do, or ``""``.
        node, gpu, gpu_pci_bus_id: Where it happened (``None`` where unknown).
        evidence: The evidence behind it, first occurrence first.
        origin: For Xids, the catalogue's ``origin`` (hardware, firmware, driver, application, system,
            consequence); else ``""``.
        explains: Scope of the symptoms it can explain: ``"gpu"``, ``"node"`` or ``"cluster"``; every
            detector states it (no default), since a wrong scope silently attaches symptoms.
        count: How many occurrences the evidence stands for (evidence lists are capped).
        from_anywhere: For symptoms that echo a failure elsewhere (a peer's socket closed): a cause on
            any node may explain it, whatever that cause's own ``explains`` scope.
        certainty: The most the detector can claim for this finding as a root cause (``"unsure"`` for a
            fact that cannot say where the fault is), or ``None`` to let the correlator's rule decide.
    """

    kind: str
    layer: str | None
    role: Role
    severity: str
    weight: float
    summary: str
    action: str = ""
    node: str | None = None
    gpu: int | None = None
    gpu_pci_bus_id: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    origin: str = ""
    explains: Scope = field(kw_only=True)
    count: int = 1
    from_anywhere: bool = False
    certainty: Certainty | None = None

    @property
    def time(self) -> datetime | None:
        """Time of the earliest timed evidence, or ``None``."""
        times = [e.time for e in self.evidence if e.time is not None]
        return min(times) if times else None
