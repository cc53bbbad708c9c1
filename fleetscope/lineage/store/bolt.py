"""Bolt backend: Neo4j 5 in production, FalkorDB's Bolt listener in tests, via the official driver.

Server differences handled here, never in the queries:

- Constraints: Neo4j gets ``CREATE CONSTRAINT ... REQUIRE n.id IS UNIQUE``; FalkorDB's Bolt endpoint
  has no Cypher constraint syntax (FalkorDB uses the ``GRAPH.CONSTRAINT`` command, which Bolt cannot
  send), so it gets ``CREATE INDEX FOR (n:L) ON (n.id)`` and uniqueness rests on every write being a
  ``MERGE`` on ``id``.
- Statement size: FalkorDB 4.16's Bolt listener writes the statement and its parameters as one
  text into a buffer of about 4 KiB and crashes the server (SIGSEGV, or "stack smashing detected")
  on anything longer, so for a server that is not Neo4j a statement whose text and parameters
  (measured as JSON, which is longer than FalkorDB's own rendering) exceed
  :data:`FALKORDB_BOLT_MAX_BYTES` is refused before it is sent. Later FalkorDB sources raise that
  buffer to 64 KiB (``MAX_PARAM_QUERY_SIZE``); Neo4j has no such limit.
- Read-only sessions: Neo4j refuses writes in a READ transaction itself. FalkorDB 4.16 accepts the
  access mode and still writes, so for a server that is not Neo4j a statement is refused before it
  is sent when it holds a write clause (:func:`write_clause`).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import neo4j
from neo4j.exceptions import ClientError, Neo4jError, ServiceUnavailable

from fleetscope.lineage.store.base import (
    KEY,
    GraphStore,
    ReadOnlyViolation,
    Row,
    StoreError,
    StoreUnavailable,
)

# Strings, quoted names and comments are removed first so that a keyword inside a value
# ("SET" in a description) does not trip the guard.
_LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|//[^\n]*|/\*.*?\*/", re.S)
_WRITE_CLAUSES = re.compile(r"\b(CREATE|MERGE|SET|DELETE|DETACH|REMOVE|DROP|FOREACH|LOAD)\b", re.I)
_CALL = re.compile(r"\bCALL\s+([A-Za-z_][\w.]*)", re.I)
_READ_PROCEDURES = frozenset(
    {"db.labels", "db.relationshiptypes", "db.propertykeys", "db.indexes", "db.constraints"}
)


def write_clause(cypher: str) -> str | None:
    """Find a clause that would make ``cypher`` write.

    Args:
        cypher: one statement.

    Returns:
        The offending clause (``"CREATE"``, ``"CALL db.idx.fulltext.createNodeIndex"`` ...), or None
        when the statement only reads. ``CALL`` is allowed only for the listed read procedures and
        ``CALL {`` subqueries are refused outright (they may write).
    """
    code = _LITERALS.sub(" ", cypher)
    match = _WRITE_CLAUSES.search(code)
    if match:
        return match.group(1).upper()
    for call in _CALL.finditer(code):
        if call.group(1).lower() not in _READ_PROCEDURES:
            return f"CALL {call.group(1)}"
    if re.search(r"\bCALL\s*\{", code, re.I):
        return "CALL { ... }"
    return None


#: The longest statement text plus parameters (UTF-8 bytes, parameters as JSON) sent to a Bolt
#: server that is not Neo4j: measured on FalkorDB 4.16.3, 4,085 bytes of text pass and 4,115 crash it.
FALKORDB_BOLT_MAX_BYTES = 4000


def _has_quote(value: Any) -> bool:
    if isinstance(value, str):
        return "'" in value
    if isinstance(value, dict):
        return any(_has_quote(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_quote(v) for v in value)
    return False


class BoltStore(GraphStore):
    """A graph reached over Bolt with the ``neo4j`` driver.

    Args:
        uri: ``bolt://host:port`` or ``neo4j://host:port`` (``+s`` for TLS).
        database: Neo4j database or FalkorDB graph name; the server default if None.
        user: user name; None connects without authentication (FalkorDB).
        password: password; kept only inside the driver, never logged.

    Raises:
        StoreError: the server cannot be reached.
    """

    backend = "bolt"

    def __init__(
        self, uri: str, *, database: str | None = None, user: str | None = None, password: str | None = None
    ) -> None:
        auth = (user, password or "") if user else None
        self._driver = neo4j.GraphDatabase.driver(uri, auth=auth)
        self._database = database
        self.read_timeout_s = 60.0
        try:
            agent = self._driver.get_server_info().agent or ""
        except (Neo4jError, ServiceUnavailable, OSError) as exc:
            self._driver.close()
            raise StoreError(f"cannot reach the Bolt server at {uri}: {exc}") from exc
        # FalkorDB announces itself with a Neo4j agent string; only Neo4j has dbms.components().
        self.is_neo4j = True  # until probed: the probe itself must not be refused
        self.is_neo4j = agent.lower().startswith("neo4j") and self._has_dbms_components()
        self.backend = "neo4j" if self.is_neo4j else f"bolt ({agent or 'unknown server'})"

    def on_database(self, database: str) -> BoltStore:
        """A store on another database (graph) of the same server, sharing this driver; closing
        either closes the driver."""
        other = copy.copy(self)
        other._database = database
        return other

    def _has_dbms_components(self) -> bool:
        try:
            self._run("CALL dbms.components() YIELD name RETURN name", None, neo4j.READ_ACCESS)
        except StoreError:
            return False
        return True

    def _run(self, cypher: str, params: dict[str, Any] | None, mode: str) -> list[Row]:
        if not self.is_neo4j and _has_quote(params):
            # FalkorDB 4.16's Bolt layer pastes parameter text into the query unescaped: a value
            # with a single quote fails, and could change the statement. Refuse it here.
            raise StoreError("FalkorDB over Bolt cannot bind text containing a single quote safely")
        if not self.is_neo4j:
            text = json.dumps(params or {}, ensure_ascii=False, default=str)
            size = len(cypher.encode()) + len(text.encode())
            if size > FALKORDB_BOLT_MAX_BYTES:
                raise StoreError(
                    f"FalkorDB over Bolt cannot take a statement and parameters of {size:,} bytes "
                    f"(at most {FALKORDB_BOLT_MAX_BYTES:,}: a longer one crashes its Bolt listener)"
                )

        # Reads carry a transaction timeout, which Neo4j enforces on the server.
        timeout = self.read_timeout_s if mode == neo4j.READ_ACCESS else None

        @neo4j.unit_of_work(timeout=timeout)
        def work(tx: neo4j.ManagedTransaction) -> list[Row]:
            return [record.data() for record in tx.run(cypher, params or {})]

        try:
            with self._driver.session(database=self._database, default_access_mode=mode) as session:
                if mode == neo4j.READ_ACCESS:
                    return session.execute_read(work)
                return session.execute_write(work)
        except ClientError as exc:
            if "AccessMode" in (exc.code or ""):
                raise ReadOnlyViolation(exc.message or str(exc)) from exc
            raise StoreError(exc.message or str(exc)) from exc
        except (ServiceUnavailable, OSError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        except Neo4jError as exc:
            raise StoreError(str(exc)) from exc

    def write(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        return self._run(cypher, params, neo4j.WRITE_ACCESS)

    def read(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        if not self.is_neo4j:
            clause = write_clause(cypher)
            if clause:
                raise ReadOnlyViolation(f"read-only session: the statement contains {clause}")
        return self._run(cypher, params, neo4j.READ_ACCESS)

    def ensure_schema(self, labels: list[str], lookups: list[tuple[str, str]]) -> None:
        for label in labels:
            if self.is_neo4j:
                self.write(
                    f"CREATE CONSTRAINT fleetscope_{label.lower()}_{KEY} IF NOT EXISTS "
                    f"FOR (n:{label}) REQUIRE n.{KEY} IS UNIQUE"
                )
            elif not self._has_index(label, KEY):
                self.write(f"CREATE INDEX FOR (n:{label}) ON (n.{KEY})")
        for label, prop in lookups:
            if self.is_neo4j:
                name = f"fleetscope_{label.lower()}_{prop}"
                self.write(f"CREATE INDEX {name} IF NOT EXISTS FOR (n:{label}) ON (n.{prop})")
            elif not self._has_index(label, prop):
                self.write(f"CREATE INDEX FOR (n:{label}) ON (n.{prop})")

    def _has_index(self, label: str, prop: str) -> bool:
        rows = self.read("CALL db.indexes() YIELD label, properties RETURN label, properties")
        return any(row["label"] == label and prop in row["properties"] for row in rows)

    def close(self) -> None:
        self._driver.close()
