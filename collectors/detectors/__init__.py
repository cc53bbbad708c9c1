"""Detectors: plug-ins that turn evidence into findings (contract in :mod:`collectors.detectors.base`)."""

from __future__ import annotations

from collectors.detectors.base import Detector
from collectors.detectors.fabric import FabricDetector
from collectors.detectors.gpu_health import GpuHealthDetector
from collectors.detectors.host_software import HostSoftwareDetector
from collectors.detectors.log_signatures import LogSignatureDetector
from collectors.detectors.nvlink import NvlinkDetector
from collectors.detectors.pcie import PcieAerDetector
from collectors.detectors.peer_deviation import PeerDeviationDetector
from collectors.detectors.straggler import StragglerDetector
from collectors.detectors.transport import TransportDetector
from collectors.detectors.xid import XidDetector

#: Every detector run on a bundle or a live window, in no particular order.
DETECTORS: tuple[type[Detector], ...] = (
    XidDetector,
    LogSignatureDetector,
    TransportDetector,
    NvlinkDetector,
    GpuHealthDetector,
    PeerDeviationDetector,
    PcieAerDetector,
    HostSoftwareDetector,
    StragglerDetector,
    FabricDetector,
)

__all__ = ["DETECTORS", "Detector"]
