"""Settings of the console and the live collector, read from ``FLEETSCOPE_*`` environment variables.

Precedence (docs/style.md, "Configuration"): command-line flags, then these environment variables, then
defaults that work on a laptop. The command line passes its flags to the Streamlit process through the
same variables, so the app has one way in.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "FLEETSCOPE_"
#: Environment variable naming the incident store (SQLite file).
ENV_INCIDENT_STORE = ENV_PREFIX + "INCIDENT_STORE"
#: Environment variable naming the folder of example bundles the console offers.
ENV_EXAMPLES = ENV_PREFIX + "EXAMPLES"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/fleetscope``, or ``~/.local/share/fleetscope``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fleetscope"


def _default_examples() -> Path:
    # Shipped as package data (fleetscope/examples), so a wheel has them as well as a source checkout.
    return Path(__file__).resolve().parents[1] / "examples" / "incidents"


class ConsoleSettings(BaseSettings):
    """Where the console reads from.

    Attributes:
        incident_store: the collector's SQLite incident store (``FLEETSCOPE_INCIDENT_STORE``).
        examples: folder of example bundles offered on the Investigate page (``FLEETSCOPE_EXAMPLES``).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    incident_store: Path = default_data_dir() / "incidents.db"
    examples: Path = _default_examples()
