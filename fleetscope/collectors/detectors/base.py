"""The detector plug-in contract.

A detector turns evidence into :class:`~fleetscope.collectors.evidence.Finding` objects. Subclass
:class:`Detector`, set ``name``, implement :meth:`Detector.detect` (it receives every piece of evidence of the
bundle or of the live window, GPU indexes and bus ids already resolved, and returns findings), and register
the class in ``DETECTORS`` in :mod:`fleetscope.collectors.detectors`. A detector:

* reads only evidence (never files), so the offline bundle and the live service share it, and is handed
  only the kinds whose entry in :mod:`fleetscope.collectors.kinds` names it in ``read_by``, or, where it
  sets ``sees_all``, every item, other kinds serving only as context (the bundle's node names, whether
  anything on a node suffered after a fault that recovered);
* that reads ``metric`` evidence declares the Prometheus series it reads in ``series``: patterns (Python
  regular expressions matched from the start of a sample's name, so a plain name or prefix is its own
  pattern). It is handed only the samples they match, and a family no detector declares never becomes
  evidence at all (the live window's ~300 samples per node are mostly series nobody reads). A pattern
  may match more than the detector uses (it costs time, never an answer); a name it reads must match.
  The series of which it reads only samples above zero (a zero, negative or NaN sample tells it nothing:
  a clock-event reason that is not active, an error counter that did not rise) it names again in
  ``above_zero``: it is handed only their samples above zero, and a sample no other detector reads at
  its value never becomes evidence;
* states what each finding ``explains`` (``gpu``, ``node`` or ``cluster``: there is no default) and, where
  its fact cannot name a cause however strong it is, caps its ``certainty`` at ``unsure``;
* sets ``role``: ``cause`` for a fault that explains others, ``symptom`` for what needs a cause (a
  watchdog timeout, a driver that cannot be reached), ``context`` for facts that are not faults;
* sets ``weight`` from reviewed knowledge (the Xid catalogue's origin and severity, a signature's weight),
  never from how often a keyword occurs;
* must not raise on odd evidence: skip what it cannot read (an optional attribute may be absent or
  ``None``). If it raises anyway, the item it failed on is left out and counted, not its whole output;
* that needs the cluster's map (job, rank, node, GPU, links) reads it from :meth:`Detector.topology`: the
  engine builds it once per bundle or window and hands the same map to every detector and the
  correlator, so no detector walks the ``_info`` series again (a detector constructed without one, as a
  test may, builds it from the evidence it is handed, which holds those series where it declares them);
* keeps no state between calls: what needs earlier windows (a node that stopped answering, a deviation
  that persists, a rank that stopped stepping) is kept by the live collector's
  :class:`~fleetscope.collectors.history.WindowHistory` and reaches the detector as ``metric`` evidence
  of the window's ``fleetscope_collector_*`` series, so a window written out as a bundle reads the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from fleetscope.collectors.evidence import Evidence, Finding
from fleetscope.collectors.topology import Topology


class Detector:
    """Base class of detectors (see the module docstring for the contract).

    Args:
        topology: The cluster's map of the bundle or window, built once by the engine for every detector;
            None: built from the evidence where a detector asks for it (:meth:`topology`).
    """

    name: ClassVar[str] = ""
    #: Handed every item of the bundle, not only the kinds that name it in ``read_by`` (used as context).
    sees_all: ClassVar[bool] = False
    #: Patterns of the ``metric`` sample names it reads (module docstring); ``()``: none.
    series: ClassVar[tuple[str, ...]] = ()
    #: Patterns of its ``series`` of which it reads only samples above zero (module docstring).
    above_zero: ClassVar[tuple[str, ...]] = ()

    def __init__(self, topology: Topology | None = None) -> None:
        self._topology = topology

    def detect(self, evidence: Sequence[Evidence]) -> Iterable[Finding]:
        """Return the findings in ``evidence``."""
        raise NotImplementedError

    def topology(self, evidence: Sequence[Evidence]) -> Topology:
        """The cluster's map: the engine's, or, where none was handed over, the one ``evidence`` states."""
        if self._topology is None:
            self._topology = Topology.from_evidence(evidence)
        return self._topology


def occurrences(evidence: Iterable[Evidence]) -> int:
    """How many lines the evidence stands for (the bundle reader keeps the first few per key and counts
    the rest in ``attrs["repeats"]``)."""
    return sum(max(1, e.attrs.get("repeats") or 1) for e in evidence)


def gpu_key(e: Evidence | Finding) -> tuple[str | None, str | int | None]:
    """Identity of the GPU an item is about: ``(node, bus id or index)``; ``(node, None)`` if none."""
    return (e.node, e.gpu_pci_bus_id or e.gpu)


def where(node: str | None, gpu: int | None, bus: str | None, by_driver: bool = False) -> str:
    """Human wording of a location: ``"GPU 3 (0000:5d:00.0) on node-02"``.

    Args:
        node: Node name, or ``None``.
        gpu: GPU index, or ``None``.
        bus: PCI bus id, or ``None``.
        by_driver: The index is the driver's instance number (see
            :data:`fleetscope.collectors.evidence.DRIVER_NUMBERING`), which the wording then says.
    """
    parts = []
    if gpu is not None:
        numbering = (
            "; index from the driver's numbering, no nvidia-smi mapping in the bundle" if by_driver else ""
        )
        parts.append(f"GPU {gpu}" + (f" ({bus}{numbering})" if bus or numbering else ""))
    elif bus:
        parts.append(f"the GPU at {bus}")
    if node:
        parts.append(("on " if parts else "") + node)
    return " ".join(parts) or "an unknown node"


class Template(dict[str, object]):
    """``str.format_map`` mapping that renders a missing field as ``?``."""

    def __missing__(self, key: str) -> str:
        return "?"
