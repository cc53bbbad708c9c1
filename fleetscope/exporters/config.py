"""The exporter's configuration: one typed model, filled from flags, environment, a YAML file, defaults.

Precedence, highest first: command-line flags, environment variables (:data:`ENV`), the YAML file given
by ``--config`` (flat keys named like the fields of :data:`ExporterConfig`), then the defaults, which
work on a laptop: listen on 127.0.0.1 only, each collector at its registered default, the running
system's ``/proc``, ``/sys`` and ``/dev/kmsg``. The collector fields, their variables and flags are
generated from the registrations (:mod:`fleetscope.exporters.registry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from fleetscope.exporters.registry import env_name, registrations

DEFAULT_PORT = 9847
"""Default TCP port. 9835 is taken by nvidia_gpu_exporter and 9400 by dcgm-exporter, which may run
on the same node."""


class CommonConfig(BaseModel):
    """Settings of ``fleetscope exporter`` that belong to no single collector.

    :data:`ExporterConfig` adds the fields every registered collector declares (see
    :mod:`fleetscope.exporters.registry`): ``collector_<name>`` and ``<name>_<setting>``.

    Attributes:
        listen_address: ``HOST:PORT`` for /metrics and /events; ``:PORT`` listens on every interface.
        web_config_file: Prometheus exporter-toolkit web config (TLS, basic auth); empty for plain HTTP.
        path_procfs: procfs mount point.
        path_sysfs: sysfs mount point.
        events_buffer_size: Kernel-log events kept for /events.
        scrape_timeout_seconds: Deadline for one collector in a scrape; past it the collector's last
            values are served with ``fleetscope_scrape_collector_success 0`` while it finishes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_address: str = f"127.0.0.1:{DEFAULT_PORT}"
    web_config_file: str = ""
    path_procfs: str = "/proc"
    path_sysfs: str = "/sys"
    events_buffer_size: int = Field(default=1000, ge=1, le=1_000_000)
    scrape_timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    @field_validator("listen_address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value

    def enabled(self, collector: str) -> bool:
        """Whether the collector named ``collector`` is on."""
        return bool(getattr(self, f"collector_{collector}", False))


def _model() -> type[CommonConfig]:
    fields: dict[str, Any] = {}
    for registration in registrations():
        fields[registration.field] = (bool, registration.default)
        for setting in registration.settings:
            fields[f"{registration.name}_{setting.key}"] = (
                setting.type,
                Field(default=setting.default, description=setting.help, ge=setting.ge, le=setting.le),
            )
    return create_model("ExporterConfig", __base__=CommonConfig, __module__=__name__, **fields)


if TYPE_CHECKING:
    ExporterConfig = CommonConfig
else:
    ExporterConfig = _model()
    ExporterConfig.__doc__ = (
        "The exporter's settings: :class:`CommonConfig` plus, for every registered collector, "
        "``collector_<name>`` (bool) and its ``<name>_<setting>`` fields."
    )

ENV: dict[str, str] = {name: env_name(name) for name in ExporterConfig.model_fields}
"""Every environment variable the exporter reads, by config field (``FLEETSCOPE_EXPORTER_<FIELD>``). The
YAML file is named by ``FLEETSCOPE_EXPORTER_CONFIG`` (:data:`ENV_CONFIG_FILE`) when ``--config`` is not
given."""
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
