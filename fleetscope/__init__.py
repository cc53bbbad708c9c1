"""fleetscope: observability and lineage for GPU training clusters.

The five parts live under this one namespace, so that installing fleetscope never shadows another
project's top-level package: :mod:`fleetscope.exporters` (the per-node agent), :mod:`fleetscope.collectors`
(the correlation engine), :mod:`fleetscope.lineage` (the lineage graph), :mod:`fleetscope.dashboards`
(Grafana provisioning) and :mod:`fleetscope.console` (the command line and the Streamlit app).
Example incident bundles ship as package data in ``fleetscope/examples``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fleetscope")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

__all__ = ["__version__"]
