"""Lineage configuration: command-line flags, then ``FLEETSCOPE_LINEAGE_*`` variables, then a YAML
file, then defaults that work on a laptop (the embedded store in ``~/.local/share/fleetscope``).

Secrets (``password``, ``api_key``) are read like any other field and never printed: the
dataclass hides them from its ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fleetscope.lineage.store.base import DEFAULT_DATA_DIR, embedded_data_dir

if TYPE_CHECKING:
    from fleetscope.lineage.service import Lineage

#: Environment variables, one per field.
ENV_VARS: dict[str, str] = {
    "store_uri": "FLEETSCOPE_LINEAGE_URI",
    "user": "FLEETSCOPE_LINEAGE_USER",
    "password": "FLEETSCOPE_LINEAGE_PASSWORD",
    "audit_log": "FLEETSCOPE_LINEAGE_AUDIT_LOG",
    "quarantine": "FLEETSCOPE_LINEAGE_QUARANTINE",
    "listen_host": "FLEETSCOPE_LINEAGE_LISTEN_HOST",
    "listen_port": "FLEETSCOPE_LINEAGE_LISTEN_PORT",
    "api_key": "FLEETSCOPE_LINEAGE_API_KEY",
}


@dataclass
class LineageConfig:
    """Where the graph lives and how the OpenLineage endpoint listens.

    Attributes:
        store_uri: ``embedded:///DIR``, ``bolt://host:7687`` or ``neo4j://host:7687``.
        user: Bolt user (Neo4j).
        password: Bolt password.
        audit_log: the hash-chained audit log file (default: ``audit.jsonl`` in the embedded store's
            folder, or in the default data folder for a Bolt store).
        quarantine: JSON-lines file of rejected OpenLineage events (default: ``quarantine.jsonl``
            beside the audit log's default).
        listen_host: endpoint address; loopback by default.
        listen_port: endpoint port (5000, the OpenLineage client's default URL port).
        api_key: bearer token the endpoint requires (required off loopback).
    """

    store_uri: str = f"embedded://{DEFAULT_DATA_DIR}"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    audit_log: Path = DEFAULT_DATA_DIR / "audit.jsonl"
    quarantine: Path = DEFAULT_DATA_DIR / "quarantine.jsonl"
    listen_host: str = "127.0.0.1"
    listen_port: int = 5000
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: Path | None = None, **flags: Any) -> LineageConfig:
        """Build the config from a YAML file (its ``lineage:`` section), the environment and flags.

        Args:
            path: optional YAML file.
            flags: field values from the command line; None means "not given".

        Raises:
            ValueError: an unknown key in the YAML file.
        """
        values: dict[str, Any] = {}
        if path is not None:
            document = yaml.safe_load(Path(path).read_text()) or {}
            section: dict[str, Any] = document.get("lineage", document) or {}
            names = {f.name for f in fields(cls)}
            unknown = sorted(set(section) - names)
            if unknown:
                raise ValueError(f"{path}: unknown lineage setting(s) {', '.join(unknown)}")
            values.update(section)
        for name, var in ENV_VARS.items():
            if os.environ.get(var):
                values[name] = os.environ[var]
        values.update({name: value for name, value in flags.items() if value is not None})
        # The audit log and the quarantine live beside an embedded graph unless placed elsewhere.
        data_dir = embedded_data_dir(str(values.get("store_uri", cls.store_uri)))
        if data_dir is not None:
            values.setdefault("audit_log", data_dir / "audit.jsonl")
            values.setdefault("quarantine", data_dir / "quarantine.jsonl")
        config = cls(**values)
        config.audit_log = Path(config.audit_log)
        config.quarantine = Path(config.quarantine)
        config.listen_port = int(config.listen_port)
        return config

    def open(self, progress: Callable[[float], None] | None = None) -> Lineage:
        """Open the configured store and return the lineage service over it (which replays the
        audit records the graph lacks).

        Args:
            progress: called with the loaded fraction while a cold embedded server loads its data.

        Raises:
            ValueError: unknown store URI scheme.
            lineage.store.base.StoreError: the store could not be reached or started.
        """
        from fleetscope.lineage.auditlog import AuditLog
        from fleetscope.lineage.service import Lineage
        from fleetscope.lineage.store import open_store

        store = open_store(self.store_uri, user=self.user, password=self.password, progress=progress)
        try:
            return Lineage(store, AuditLog(self.audit_log), self.quarantine)
        except BaseException:
            store.close()  # a failed open leaves no server behind
            raise
