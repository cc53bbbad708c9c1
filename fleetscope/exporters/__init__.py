"""fleetscope exporters: the per-node agent serving /metrics (Prometheus) and /events (JSON).

One Prometheus collector per source (``host``, ``gpu``, ``xid``), wrapped by
:class:`~fleetscope.exporters.scrape.ScrapeCollector`, served by
:class:`~fleetscope.exporters.server.Exporter`. This package imports nothing else of fleetscope's.
"""

from fleetscope.exporters.config import ENV, ENV_CONFIG_FILE, ConfigError, ExporterConfig, load_config
from fleetscope.exporters.gpu import GpuCollector
from fleetscope.exporters.host import HostCollector
from fleetscope.exporters.metrics import MetricSpec
from fleetscope.exporters.pci import canonical_pci_bus_id
from fleetscope.exporters.scrape import ScrapeCollector, SourceCollector, SourceUnavailable
from fleetscope.exporters.server import Exporter
from fleetscope.exporters.xid import JOURNAL, KernelLogParser, XidCollector, XidWatcher

__all__ = [
    "ENV",
    "ENV_CONFIG_FILE",
    "JOURNAL",
    "ConfigError",
    "Exporter",
    "ExporterConfig",
    "GpuCollector",
    "HostCollector",
    "KernelLogParser",
    "MetricSpec",
    "ScrapeCollector",
    "SourceCollector",
    "SourceUnavailable",
    "XidCollector",
    "XidWatcher",
    "canonical_pci_bus_id",
    "load_config",
]
