"""Settings of the console and the live collector, read from ``FLEETSCOPE_*`` environment variables.

Precedence (docs/style.md, "Configuration"): command-line flags, then these environment variables, then
defaults that work on a laptop. The command line passes its flags to the Streamlit process through the
same variables, so the app has one way in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "FLEETSCOPE_"
#: Environment variable naming the incident store (SQLite file).
ENV_INCIDENT_STORE = ENV_PREFIX + "INCIDENT_STORE"
#: Environment variable naming the folder of example bundles the console offers.
ENV_EXAMPLES = ENV_PREFIX + "EXAMPLES"
#: Environment variable naming the console's YAML config file (any field of :class:`ConsoleSettings`).
ENV_CONSOLE_CONFIG = ENV_PREFIX + "CONSOLE_CONFIG"
#: Exporters the console reads for its cluster and job pages: ``[NAME=]HOST:PORT``, comma-separated.
ENV_CONSOLE_TARGETS = ENV_PREFIX + "CONSOLE_TARGETS"
#: A Prometheus ``file_sd`` JSON file of exporters for the console.
ENV_CONSOLE_TARGETS_FILE = ENV_PREFIX + "CONSOLE_TARGETS_FILE"
#: A Prometheus-compatible API the console reads instead of exporters.
ENV_CONSOLE_PROMETHEUS_URL = ENV_PREFIX + "CONSOLE_PROMETHEUS_URL"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/fleetscope``, or ``~/.local/share/fleetscope``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fleetscope"


def _default_examples() -> Path:
    # Shipped as package data (fleetscope/examples), so a wheel has them as well as a source checkout.
    return Path(__file__).resolve().parents[1] / "examples" / "incidents"


class AuthSettings(BaseModel):
    """Who may do what once the console requires a login (an ``[auth]`` section in Streamlit's
    ``secrets.toml``; see :mod:`fleetscope.console.auth`).

    Attributes:
        role_claim: the ID-token claim that carries the user's groups or roles (a list or one string).
        admin: claim values that make a user an admin (free-form read-only Cypher on the Audit page).
    """

    role_claim: str = "groups"
    admin: list[str] = ["fleetscope-admin"]


class ConsoleSettings(BaseSettings):
    """Where the console reads from.

    Precedence: environment variables, then the YAML file named by ``FLEETSCOPE_CONSOLE_CONFIG``
    (keys are the attribute names below), then defaults.

    Attributes:
        incident_store: the collector's SQLite incident store (``FLEETSCOPE_INCIDENT_STORE``).
        examples: folder of example bundles offered on the Investigate page (``FLEETSCOPE_EXAMPLES``).
        console_targets: exporters the cluster and job pages read, ``[NAME=]HOST:PORT``
            (``FLEETSCOPE_CONSOLE_TARGETS``, comma-separated).
        console_targets_file: a Prometheus ``file_sd`` JSON file of exporters
            (``FLEETSCOPE_CONSOLE_TARGETS_FILE``), used when no targets are given.
        console_prometheus_url: a Prometheus-compatible API (``FLEETSCOPE_CONSOLE_PROMETHEUS_URL``), used
            when neither of the above is given.
        console_window_seconds: the window counters are counted over, seconds.
        console_refresh_seconds: the oldest a look at the cluster may be before a page reads it again.
        auth: roles once a login is required (``FLEETSCOPE_AUTH__ROLE_CLAIM``, ``FLEETSCOPE_AUTH__ADMIN``).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_nested_delimiter="__")

    incident_store: Path = default_data_dir() / "incidents.db"
    examples: Path = _default_examples()
    console_targets: Annotated[list[str], NoDecode] = []
    console_targets_file: Path | None = None
    console_prometheus_url: str | None = None
    console_window_seconds: float = 300.0
    console_refresh_seconds: float = 15.0
    auth: AuthSettings = AuthSettings()

    @field_validator("console_targets", mode="before")
    @classmethod
    def _split_targets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = os.environ.get(ENV_CONSOLE_CONFIG)
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if config:
            if not Path(config).is_file():
                raise ValueError(f"{ENV_CONSOLE_CONFIG}={config}: no such file")
            sources += (YamlConfigSettingsSource(settings_cls, yaml_file=config),)
        return sources
