"""Detectors: plug-ins that turn evidence into findings (contract in
:mod:`fleetscope.collectors.detectors.base`)."""

from __future__ import annotations

from fleetscope.collectors.detectors.absence import AbsenceDetector
from fleetscope.collectors.detectors.barrier import BarrierTimeoutDetector
from fleetscope.collectors.detectors.base import Detector
from fleetscope.collectors.detectors.connections import ConnectionLossDetector
from fleetscope.collectors.detectors.dcgmi_diag import DcgmiDiagDetector
from fleetscope.collectors.detectors.efa import EfaDetector
from fleetscope.collectors.detectors.fabric import FabricDetector
from fleetscope.collectors.detectors.gpu_health import GpuHealthDetector
from fleetscope.collectors.detectors.host_software import HostSoftwareDetector
from fleetscope.collectors.detectors.iteration_time import IterationTimeJumpDetector
from fleetscope.collectors.detectors.log_signatures import LogSignatureDetector
from fleetscope.collectors.detectors.lost_peer import LostPeerDetector
from fleetscope.collectors.detectors.nccl_tests_runs import NcclTestsRunsDetector
from fleetscope.collectors.detectors.nvlink import NvlinkDetector
from fleetscope.collectors.detectors.pcie import PcieAerDetector
from fleetscope.collectors.detectors.peer_deviation import PeerDeviationDetector
from fleetscope.collectors.detectors.persistent_deviation import PersistentDeviationDetector
from fleetscope.collectors.detectors.rates import RatesDetector
from fleetscope.collectors.detectors.recovery_action import GpuRecoveryActionDetector
from fleetscope.collectors.detectors.slow_storage import SlowStorageDetector
from fleetscope.collectors.detectors.stragglers import StragglerRankDetector
from fleetscope.collectors.detectors.transport import TransportDetector
from fleetscope.collectors.detectors.xid import XidDetector

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
    IterationTimeJumpDetector,
    FabricDetector,
    EfaDetector,
    GpuRecoveryActionDetector,
    DcgmiDiagDetector,
    ConnectionLossDetector,
    BarrierTimeoutDetector,
    NcclTestsRunsDetector,
    LostPeerDetector,
    AbsenceDetector,
    PersistentDeviationDetector,
    StragglerRankDetector,
    RatesDetector,
    SlowStorageDetector,
)

__all__ = ["DETECTORS", "Detector"]
