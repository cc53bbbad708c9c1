"""fleetscope install: put the exporter on many hosts over SSH, from the operator's machine.

:mod:`~fleetscope.install.hosts` reads host names, Slurm-style ranges and hosts files;
:mod:`~fleetscope.install.wheelhouse` builds the wheels the hosts install offline;
:mod:`~fleetscope.install.deploy` installs, upgrades (with rollback) and uninstalls over SSH;
:mod:`~fleetscope.install.remote` holds what runs and is written on a host. The command line is
``fleetscope install`` / ``fleetscope uninstall`` (:mod:`fleetscope.console.install`). This package
imports nothing else of fleetscope's but the version.
"""

from fleetscope.install.deploy import (
    DEFAULT_EXPORTER_PORT,
    DEFAULT_PARALLEL,
    DEFAULT_PREFIX,
    HostResult,
    InstallSettings,
    Status,
    install_hosts,
    uninstall_hosts,
    update_file_sd,
)
from fleetscope.install.hosts import Host, HostSpecError, collect_hosts, expand_range, parse_host
from fleetscope.install.wheelhouse import (
    Wheelhouse,
    WheelhouseError,
    build_wheelhouse,
    default_source,
    open_wheelhouse,
)

__all__ = [
    "DEFAULT_EXPORTER_PORT",
    "DEFAULT_PARALLEL",
    "DEFAULT_PREFIX",
    "Host",
    "HostResult",
    "HostSpecError",
    "InstallSettings",
    "Status",
    "Wheelhouse",
    "WheelhouseError",
    "build_wheelhouse",
    "collect_hosts",
    "default_source",
    "expand_range",
    "install_hosts",
    "open_wheelhouse",
    "parse_host",
    "uninstall_hosts",
    "update_file_sd",
]
