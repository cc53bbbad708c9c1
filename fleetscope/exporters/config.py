"""The exporter's configuration: one typed model, filled from flags, environment, a YAML file, defaults.

Precedence, highest first: command-line flags, environment variables (:data:`ENV`), the YAML file given
by ``--config`` (flat keys named like the fields of :class:`ExporterConfig`), then the defaults, which
work on a laptop: listen on 127.0.0.1 only, every collector on, the running system's ``/proc``, ``/sys``
and ``/dev/kmsg``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_PORT = 9847
"""Default TCP port. 9835 is taken by nvidia_gpu_exporter and 9400 by dcgm-exporter, which may run
on the same node."""


class ExporterConfig(BaseModel):
    """Settings of ``fleetscope exporter``.

    Attributes:
        listen_address: ``HOST:PORT`` for /metrics and /events; ``:PORT`` listens on every interface.
        collector_host: Run the host collector (/proc, /sys).
        collector_gpu: Run the GPU collector (NVML).
        collector_xid: Run the Xid watcher (kernel log).
        path_procfs: procfs mount point.
        path_sysfs: sysfs mount point.
        xid_kernel_log: ``/dev/kmsg``, ``journal`` (journalctl) or a log file to follow.
        gpu_timeout_seconds: Deadline for one GPU's NVML calls in a scrape.
        events_buffer_size: Kernel-log events kept for /events.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_address: str = f"127.0.0.1:{DEFAULT_PORT}"
    collector_host: bool = True
    collector_gpu: bool = True
    collector_xid: bool = True
    path_procfs: str = "/proc"
    path_sysfs: str = "/sys"
    xid_kernel_log: str = "/dev/kmsg"
    gpu_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    events_buffer_size: int = Field(default=1000, ge=1, le=1_000_000)

    @field_validator("listen_address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value


ENV: dict[str, str] = {
    "listen_address": "FLEETSCOPE_EXPORTER_LISTEN_ADDRESS",
    "collector_host": "FLEETSCOPE_EXPORTER_COLLECTOR_HOST",
    "collector_gpu": "FLEETSCOPE_EXPORTER_COLLECTOR_GPU",
    "collector_xid": "FLEETSCOPE_EXPORTER_COLLECTOR_XID",
    "path_procfs": "FLEETSCOPE_EXPORTER_PATH_PROCFS",
    "path_sysfs": "FLEETSCOPE_EXPORTER_PATH_SYSFS",
    "xid_kernel_log": "FLEETSCOPE_EXPORTER_XID_KERNEL_LOG",
    "gpu_timeout_seconds": "FLEETSCOPE_EXPORTER_GPU_TIMEOUT_SECONDS",
    "events_buffer_size": "FLEETSCOPE_EXPORTER_EVENTS_BUFFER_SIZE",
}
"""Every environment variable the exporter reads, by config field. The YAML file is named by
``FLEETSCOPE_EXPORTER_CONFIG`` (:data:`ENV_CONFIG_FILE`) when ``--config`` is not given."""
ENV_CONFIG_FILE = "FLEETSCOPE_EXPORTER_CONFIG"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the source (flag, variable or file) and field."""


def split_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT``, ``:PORT`` for all interfaces) into host and port.

    Raises:
        ValueError: Not ``HOST:PORT`` with a port in 0-65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def load_config(
    flags: Mapping[str, Any], env: Mapping[str, str], config_file: str | Path | None = None
) -> ExporterConfig:
    """Build the configuration from its four layers.

    Args:
        flags: Values given on the command line, by field name; ``None`` means not given.
        env: The environment (``os.environ``).
        config_file: YAML file; falls back to ``env[ENV_CONFIG_FILE]``; ``None`` for none.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: A layer has an unknown key or an invalid value; nothing is started.
    """
    values: dict[str, Any] = {}
    config_file = config_file or env.get(ENV_CONFIG_FILE) or None
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {config_file}: expected a mapping of settings, got {type(loaded).__name__}"
            )
        _check(loaded, f"config file {config_file}")
        values.update(loaded)
    from_env = {field: env[name] for field, name in ENV.items() if name in env}
    _check(from_env, "environment", {field: ENV[field] for field in from_env})
    values.update(from_env)
    from_flags = {field: value for field, value in flags.items() if value is not None}
    _check(from_flags, "command line")
    values.update(from_flags)
    try:
        return ExporterConfig(**values)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from None


def _check(layer: dict[str, Any], where: str, names: dict[str, str] | None = None) -> None:
    """Validate one layer on its own so an error names the layer it came from."""
    try:
        ExporterConfig(**layer)
    except ValidationError as exc:
        problems = "; ".join(
            f"{(names or {}).get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else ''}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
