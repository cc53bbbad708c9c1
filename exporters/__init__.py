"""fleetscope exporters: the per-node agent serving /metrics (Prometheus) and /events (JSON).

One Prometheus collector per source (``host``, ``gpu``, ``xid``), wrapped by
:class:`~exporters.scrape.ScrapeCollector`, served by :class:`~exporters.server.Exporter`. This package
imports nothing else of fleetscope's.
"""

from exporters.config import ENV, ENV_CONFIG_FILE, ConfigError, ExporterConfig, load_config
from exporters.gpu import GpuCollector
from exporters.host import HostCollector
from exporters.metrics import MetricSpec
from exporters.pci import canonical_pci_bus_id
from exporters.scrape import ScrapeCollector, SourceCollector, SourceUnavailable
from exporters.server import Exporter
from exporters.xid import JOURNAL, KernelLogParser, XidCollector, XidWatcher

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
