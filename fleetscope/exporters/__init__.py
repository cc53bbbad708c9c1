"""fleetscope exporters: the per-node agent serving /metrics (Prometheus) and /events (JSON).

One Prometheus collector per source, one file each, registered with
:func:`~fleetscope.exporters.registry.register` (which also makes its flags, config keys and variables);
run under a deadline by :class:`~fleetscope.exporters.scrape.ScrapeCollector` and served by
:class:`~fleetscope.exporters.server.Exporter`. This package imports nothing else of fleetscope's.
"""

from fleetscope.exporters.config import ENV, ENV_CONFIG_FILE, ConfigError, ExporterConfig, load_config
from fleetscope.exporters.gpu import GpuCollector
from fleetscope.exporters.host import HostCollector
from fleetscope.exporters.infiniband import InfinibandCollector
from fleetscope.exporters.jobs import JobCollector
from fleetscope.exporters.metrics import MetricSpec
from fleetscope.exporters.netprobe import NetworkProbeCollector
from fleetscope.exporters.nvlink import NvlinkCollector, P2PLatencyProbe
from fleetscope.exporters.pci import canonical_pci_bus_id
from fleetscope.exporters.registry import BuildContext, Registration, Setting, register, registrations
from fleetscope.exporters.scrape import ScrapeCollector, SourceCollector, SourceUnavailable
from fleetscope.exporters.server import Exporter
from fleetscope.exporters.training import TrainingCollector, TrainingHook
from fleetscope.exporters.xid import JOURNAL, KernelLogParser, XidCollector, XidWatcher

__all__ = [
    "ENV",
    "ENV_CONFIG_FILE",
    "JOURNAL",
    "BuildContext",
    "ConfigError",
    "Exporter",
    "ExporterConfig",
    "GpuCollector",
    "HostCollector",
    "InfinibandCollector",
    "JobCollector",
    "KernelLogParser",
    "MetricSpec",
    "NetworkProbeCollector",
    "NvlinkCollector",
    "P2PLatencyProbe",
    "Registration",
    "ScrapeCollector",
    "Setting",
    "SourceCollector",
    "SourceUnavailable",
    "TrainingCollector",
    "TrainingHook",
    "XidCollector",
    "XidWatcher",
    "canonical_pci_bus_id",
    "load_config",
    "register",
    "registrations",
]
