"""The graph store contract and the URI that picks a backend.

A backend subclasses :class:`GraphStore` and implements :meth:`GraphStore.write`,
:meth:`GraphStore.read`, :meth:`GraphStore.ensure_schema` and :meth:`GraphStore.close`.
:func:`open_store` picks the backend from the URI scheme, as MLflow picks a tracking store:

- ``bolt://``, ``bolt+s://``, ``neo4j://``, ``neo4j+s://``: :class:`fleetscope.lineage.store.bolt.BoltStore`
  (Neo4j 5 in production; FalkorDB's Bolt listener in tests). ``?database=NAME`` picks the
  database (Neo4j) or graph (FalkorDB).
- ``embedded:///DATA/DIR`` or ``embedded://`` (default data dir):
  :class:`fleetscope.lineage.store.embedded.EmbeddedStore`, a FalkorDB server that fleetscope starts and
  stops.

Rules every backend keeps (the contract tests in ``tests/lineage`` check them):

- ``write`` runs exactly one Cypher statement: it applies whole or not at all.
- ``read`` runs in a read-only session: a statement that would write raises
  :class:`ReadOnlyViolation` and changes nothing.
- Parameters are always bound by the driver, never formatted into the statement text.
- Rows come back as ``dict`` of column name to plain Python value (str, int, float, bool, None,
  lists of these); queries return properties, not node objects.
- Errors from the server surface as :class:`StoreError` with the server's message;
  :class:`StoreUnavailable` when the server could not be reached at all (nothing was refused: the
  statement may be sent again once it is back).
- Every node is found by its ``key`` property (:data:`KEY`, see
  :func:`fleetscope.lineage.schema.node_key`), which the store keeps unique; ``id`` is the text
  people see. FalkorDB's unique-constraint code crashes the server on a value with a leading or
  trailing blank or over 4,096 bytes, and its index does not find such a value, so the engines are
  handed a fixed-size hex key and never the id itself.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Row = dict[str, Any]

#: The node property the stores index and keep unique (see the module docstring).
KEY = "key"

DEFAULT_DATA_DIR = Path(os.path.expanduser("~/.local/share/fleetscope/lineage"))


class StoreError(RuntimeError):
    """The graph server refused or failed a statement, or could not be reached."""


class StoreUnavailable(StoreError):
    """The graph server could not be reached, or went away during a statement."""


class ReadOnlyViolation(StoreError):
    """A statement sent through a read-only session would have written to the graph."""


class GraphStore(abc.ABC):
    """A Cypher graph reached through one backend (see the module docstring for the contract)."""

    #: Short backend name for tables and logs, e.g. ``"embedded-falkordb"``.
    backend: str = ""

    @abc.abstractmethod
    def write(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run one statement that may write.

        Args:
            cypher: a single Cypher statement.
            params: bound parameters.

        Returns:
            The rows the statement returns.

        Raises:
            StoreError: the server refused or failed the statement; nothing was applied.
        """

    @abc.abstractmethod
    def read(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run one statement in a read-only session.

        Raises:
            ReadOnlyViolation: the statement would write.
            StoreError: any other failure.
        """

    @abc.abstractmethod
    def ensure_schema(self, labels: list[str], lookups: list[tuple[str, str]]) -> None:
        """Create what is missing: a uniqueness constraint on :data:`KEY` for each label (an index
        where the backend has no constraint syntax) and an index for each ``(label, property)``
        lookup the queries filter on. Idempotent."""

    def clear(self) -> None:
        """Delete every node and relationship of this graph (``fleetscope lineage rebuild``)."""
        self.write("MATCH (n) DETACH DELETE n")

    def other_graph(self, name: str) -> GraphStore | None:
        """A scratch graph on the same server, sharing this store's connection, or None where the
        backend cannot hold a second graph (Neo4j Community has one database). Closing it leaves
        this store open."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and stop any server this store started."""

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def embedded_data_dir(uri: str) -> Path | None:
    """The data folder an ``embedded://`` URI names (the default folder for ``embedded://``).

    Returns:
        The folder, or None when ``uri`` is not an embedded-store URI.
    """
    parts = urlsplit(uri)
    if parts.scheme.lower() != "embedded":
        return None
    return Path(parts.path) if parts.path not in {"", "/"} else DEFAULT_DATA_DIR


def open_store(
    uri: str,
    *,
    user: str | None = None,
    password: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> GraphStore:
    """Open the backend that ``uri`` names (see the module docstring).

    Args:
        uri: store URI.
        user: Bolt user name (Neo4j), if the server requires one.
        password: Bolt password; never logged.
        progress: called with the loaded fraction while a cold embedded server loads its data.

    Returns:
        A connected store.

    Raises:
        ValueError: unknown scheme.
        StoreError: the server could not be reached or started.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    if scheme in {"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"}:
        from fleetscope.lineage.store.bolt import BoltStore

        database = query.get("database", [None])[0]
        address = parts._replace(query="").geturl()
        return BoltStore(address, database=database, user=user, password=password)
    if scheme == "embedded":
        from fleetscope.lineage.store.embedded import EmbeddedStore

        graph = query.get("graph", ["fleetscope"])[0]
        return EmbeddedStore(embedded_data_dir(uri) or DEFAULT_DATA_DIR, graph=graph, progress=progress)
    raise ValueError(f"unknown lineage store URI scheme {parts.scheme!r} in {uri!r} (bolt, neo4j, embedded)")
